//! The graph: a petgraph DAG of ops in Darknet layer order, plus its parameters.

use petgraph::graph::DiGraph;
use petgraph::visit::EdgeRef;
use petgraph::Direction;

pub use petgraph::graph::NodeIndex;

use crate::{NetConfig, Op, ParamKind, ParamStore, Shape};

/// An op with its inferred output shape and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    pub shape: Shape,
    /// Darknet layer index (`None` for the network input).
    pub layer: Option<usize>,
    /// 1-based cfg line of the section header.
    pub line: usize,
}

/// A model: ops as nodes, tensors as edges (weighted by the consumer's input slot).
#[derive(Debug, Clone)]
pub struct Graph {
    /// The model's name (its cfg file name), for dumps and messages.
    pub name: String,
    pub net: NetConfig,
    pub g: DiGraph<Node, usize>,
    pub input: NodeIndex,
    /// Darknet layer index → node.
    pub layers: Vec<NodeIndex>,
    pub params: ParamStore,
}

impl Graph {
    /// A graph holding only the network input `[channels, height, width]`.
    pub fn new(name: impl Into<String>, net: NetConfig, line: usize) -> Self {
        let mut g = DiGraph::new();
        let shape = Shape::new(net.channels, net.height, net.width);
        let input = g.add_node(Node { op: Op::Input, shape, layer: None, line });
        Graph { name: name.into(), net, g, input, layers: Vec::new(), params: ParamStore::default() }
    }

    /// Appends the next Darknet layer, inferring its shape from `inputs`.
    pub fn add_layer(&mut self, op: Op, inputs: &[NodeIndex], line: usize) -> Result<NodeIndex, String> {
        let shapes: Vec<Shape> = inputs.iter().map(|&i| self.g[i].shape).collect();
        let shape = op.infer(&shapes)?;
        let layer = Some(self.layers.len());
        let n = self.g.add_node(Node { op, shape, layer, line });
        for (slot, &i) in inputs.iter().enumerate() {
            self.g.add_edge(i, n, slot);
        }
        self.layers.push(n);
        Ok(n)
    }

    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.g[n]
    }

    /// The node of Darknet layer `index`.
    pub fn layer(&self, index: usize) -> &Node {
        &self.g[self.layers[index]]
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn input_shape(&self) -> Shape {
        self.g[self.input].shape
    }

    /// Producers of `n`'s inputs, in slot order.
    pub fn inputs(&self, n: NodeIndex) -> Vec<NodeIndex> {
        let mut e: Vec<(usize, NodeIndex)> =
            self.g.edges_directed(n, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
        e.sort_unstable();
        e.into_iter().map(|(_, s)| s).collect()
    }

    pub fn input_shapes(&self, n: NodeIndex) -> Vec<Shape> {
        self.inputs(n).into_iter().map(|i| self.g[i].shape).collect()
    }

    /// The `.weights` arrays of layer `index`, in file order.
    pub fn param_layout(&self, index: usize) -> Vec<(ParamKind, usize)> {
        let n = self.layers[index];
        self.g[n].op.param_layout(&self.input_shapes(n))
    }

    /// Floats the `.weights` file holds for layer `index`.
    pub fn param_count(&self, index: usize) -> usize {
        self.param_layout(index).iter().map(|(_, n)| n).sum()
    }

    pub fn total_params(&self) -> usize {
        (0..self.num_layers()).map(|i| self.param_count(i)).sum()
    }

    /// Darknet's BFLOPs of layer `index`.
    pub fn bflops(&self, index: usize) -> f64 {
        let n = self.layers[index];
        self.g[n].op.bflops(&self.input_shapes(n), self.g[n].shape)
    }

    pub fn total_bflops(&self) -> f64 {
        (0..self.num_layers()).map(|i| self.bflops(i)).sum()
    }

    /// Layer indices of the detection heads (`[yolo]` and `[region]`), in order.
    pub fn heads(&self) -> Vec<usize> {
        (0..self.num_layers()).filter(|&i| matches!(self.layer(i).op, Op::Yolo(_) | Op::Region(_))).collect()
    }
}
