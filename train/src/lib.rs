//! Training on the ternc IR.
//!
//! Will hold forward and backward passes over the same graph, Darknet's losses and
//! learning-rate policies, datasets in Darknet layout, straight-through ternarization,
//! stage plans, checkpoints and mAP evaluation.
