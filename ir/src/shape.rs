use std::fmt;

/// The largest tensor ternc accepts: anything bigger is a typo in a cfg, not a model.
pub const MAX_TENSOR_BYTES: u64 = 4 << 30;

/// A feature map `[c, h, w]` (one image; the batch dimension is the runtime's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w }
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Elements of one channel plane.
    pub fn plane(&self) -> usize {
        self.h * self.w
    }
    pub fn to_array(self) -> [usize; 3] {
        [self.c, self.h, self.w]
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{},{},{}]", self.c, self.h, self.w)
    }
}
