//! The value planes of a dual pass's matrix products, kept across the passes of one
//! linearization. At fixed parameters and a fixed batch, every value of a forward-over-reverse
//! pass is the same whatever the direction: only the tangents change from one Hessian-vector
//! product to the next. So each product of the pass is named by its place in it ([`Site`]), the
//! first pass computes and keeps its value plane (while they fit in a byte budget), and later
//! passes read it back instead of multiplying again — what conjugate gradients and Lanczos, which
//! ask for dozens of products at one point, need. A kept plane is the one the product would give
//! again, bit for bit (the same kernels on the same values). This module owns the store; it
//! knows nothing of layers or of dual numbers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

/// One matrix product of a pass, named by where it sits. Every product of one pass has its own
/// site (each weight belongs to one linear layer, read once forward and once backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// `x·W` of the linear layer whose weight is parameter `w`.
    Linear(usize),
    /// That layer's input gradient `dy·Wᵀ`.
    LinearInput(usize),
    /// That layer's weight gradient.
    LinearWeight(usize),
    /// Block `l`'s attention for batch row and head `bh`: `part` 0 the scores `q·kᵀ`, 1 the
    /// output `p·v`; the backward's 2 `dp`, 3 `dv`, 4 `dq`, 5 `dk`.
    Attention { l: usize, bh: usize, part: u8 },
    /// The output layer's logits.
    Logits,
    /// The output layer's input gradient.
    HeadInput,
    /// The output layer's weight gradient.
    HeadWeight,
}

/// A product's value plane, row-major `rows × cols`.
pub struct Plane {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f64>,
}

/// The value planes kept so far, and the bytes still free for more.
pub struct Primal {
    kept: RwLock<HashMap<Site, Arc<Plane>>>,
    room: AtomicUsize,
}

impl Primal {
    /// A store that keeps planes while they fit in `budget` bytes (0: keeps nothing, every
    /// product is computed each time).
    pub fn new(budget: usize) -> Primal {
        Primal {
            kept: RwLock::new(HashMap::new()),
            room: AtomicUsize::new(budget),
        }
    }

    /// The value plane of the `rows × cols` product at `site`: the kept one, else `make()`'s,
    /// kept when it fits.
    pub fn plane(
        &self,
        site: Site,
        rows: usize,
        cols: usize,
        make: impl FnOnce() -> Vec<f64>,
    ) -> Arc<Plane> {
        let kept = self.kept.read().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = kept.get(&site) {
            assert_eq!(
                (p.rows, p.cols),
                (rows, cols),
                "two products of one pass share {site:?}"
            );
            return p.clone();
        }
        drop(kept);
        let plane = Arc::new(Plane {
            rows,
            cols,
            values: make(),
        });
        let bytes = rows * cols * std::mem::size_of::<f64>();
        let fits = self
            .room
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                r.checked_sub(bytes)
            })
            .is_ok();
        if fits {
            let mut kept = self.kept.write().unwrap_or_else(|e| e.into_inner());
            kept.insert(site, plane.clone());
        }
        plane
    }

    /// How many planes are kept.
    pub fn len(&self) -> usize {
        self.kept.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plane_is_made_once_while_it_fits_and_every_time_after() {
        let primal = Primal::new(2 * 4 * 8);
        let made = std::sync::atomic::AtomicUsize::new(0);
        let make = || {
            made.fetch_add(1, Ordering::Relaxed);
            vec![1.0; 4]
        };
        for _ in 0..3 {
            assert_eq!(primal.plane(Site::Logits, 2, 2, make).values, vec![1.0; 4]);
        }
        assert_eq!(made.load(Ordering::Relaxed), 1);
        primal.plane(Site::HeadInput, 2, 2, make);
        assert_eq!(primal.len(), 2);
        // The budget (two planes of 32 bytes) is spent: a third site is made on every call.
        for _ in 0..2 {
            primal.plane(Site::HeadWeight, 2, 2, make);
        }
        assert_eq!((made.load(Ordering::Relaxed), primal.len()), (4, 2));
    }
}
