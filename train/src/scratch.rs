//! Reusable float buffers: taken by a parallel task, returned after, so steady-state
//! steps allocate nothing.

use std::sync::Mutex;

#[derive(Default)]
pub struct Scratch(Mutex<Vec<Vec<f32>>>);

impl Scratch {
    /// A buffer of exactly `len` floats (contents unspecified).
    pub fn take(&self, len: usize) -> Vec<f32> {
        let mut v = self.0.lock().map(|mut p| p.pop()).unwrap_or_default().unwrap_or_default();
        v.resize(len, 0.0);
        v
    }
    pub fn give(&self, v: Vec<f32>) {
        if let Ok(mut p) = self.0.lock() {
            p.push(v);
        }
    }
}
