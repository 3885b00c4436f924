//! Influence analysis at the unlearned parameters, in f64 on one parameter group (default
//! `embedding`): exact Hessian-vector products of the retain loss by forward-over-reverse
//! differentiation, the sample's loss linearized once ([`Space::hessian`], by
//! `model::grad::Linearized`) so that the dozens of products Lanczos and conjugate gradients
//! ask for at one point share their value planes, checked at run time for symmetry and against
//! central finite differences of the gradient; Lanczos for the extreme Hessian eigenvalues;
//! conjugate gradients for `(H + λI)⁻¹g`; each sampled record's self-influence `gᵀ(H + λI)⁻¹g`
//! (a forgotten record should look like a holdout record, Koh & Liang 2017); and the retain
//! gradient norm with the certified-removal distance bound `‖θ − θ*‖ ≤ ‖∇L(θ)‖ / (λ_min + λ)`
//! under its stated local-convexity assumption (Guo et al. 2020). Parameters are moved only for
//! the finite differences, on the in-memory f64 copy, and put back bit for bit.

use super::cg::conjugate_gradients;
use super::lanczos::{dot, lanczos, norm};
use crate::data::{Batch, Encoded};
use crate::judge::evidence::{HvpCheck, SelfInfluence, Spectrum};
use crate::model::grad::{loss_and_grad, Linearized, ParamTensors};
use crate::model::Gpt2;
use candle_core::{DType, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The local-convexity assumption behind the distance bound, written into the evidence.
pub const DISTANCE_ASSUMPTION: &str =
    "Assumes the retain loss restricted to the parameter group, plus (damping/2)·‖θ − θ_u‖², \
is (λ_min + damping)-strongly convex on a ball around the unlearned parameters θ_u that contains \
its minimiser θ*, where λ_min is the smallest Lanczos Ritz value of the Hessian at θ_u on the \
Hessian sample (a Ritz value is at least the true smallest eigenvalue, so the bound can be \
optimistic). Then ‖θ_u − θ*‖ ≤ ‖∇L(θ_u)‖ / (λ_min + damping). Nothing is claimed when \
λ_min + damping ≤ 0, and nothing about parameters outside the group.";

/// Bytes a sample's linearization may keep of its products' value planes: at the bundled
/// world's scale all of them (tens of MB), at GPT-2 small's the larger ones recomputed.
pub const PRIMAL_BUDGET: usize = 1 << 30;

/// Central finite-difference step along a unit vector.
const FD_STEP: f64 = 1e-4;

/// A weighted set of batches whose loss is `Σ w_b · loss_b` (w_b = the batch's share of the
/// scored tokens, so the sum is the token-weighted mean loss of all records).
pub struct Sample {
    pub batches: Vec<(Batch, f64)>,
    pub records: usize,
    pub tokens: usize,
}

impl Sample {
    pub fn new(records: &[&Encoded], pad_id: u32, rows: usize) -> Sample {
        let batches: Vec<Batch> = records
            .chunks(rows.max(1))
            .map(|c| Batch::new(c, pad_id))
            .collect();
        let tokens: usize = batches.iter().map(|b| b.scored_tokens()).sum();
        Sample {
            batches: batches
                .into_iter()
                .map(|b| {
                    let w = b.scored_tokens() as f64 / tokens.max(1) as f64;
                    (b, w)
                })
                .collect(),
            records: records.len(),
            tokens,
        }
    }
}

/// The trainable parameters of an f64 model as one flat vector.
pub struct Space<'a> {
    pub model: &'a Gpt2,
    names: Vec<String>,
    shapes: Vec<Vec<usize>>,
}

impl<'a> Space<'a> {
    /// `model` must be f64 with the influence group already trainable.
    pub fn new(model: &'a Gpt2) -> Space<'a> {
        let vars = model.trainable_vars();
        Space {
            model,
            names: vars.iter().map(|(n, _)| n.to_string()).collect(),
            shapes: vars.iter().map(|(_, v)| v.dims().to_vec()).collect(),
        }
    }

    pub fn dim(&self) -> usize {
        self.shapes
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn flatten(&self, t: &ParamTensors) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.dim());
        for (_, x) in t {
            out.extend(x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
        }
        Ok(out)
    }

    fn unflatten(&self, flat: &[f64]) -> Result<ParamTensors> {
        let mut off = 0;
        let dev = self.model.device();
        self.names
            .iter()
            .zip(&self.shapes)
            .map(|(n, s)| {
                let k: usize = s.iter().product();
                let t = Tensor::from_slice(&flat[off..off + k], s.as_slice(), dev)?;
                off += k;
                Ok((n.clone(), t))
            })
            .collect()
    }

    /// Loss and gradient of the sample's weighted loss.
    pub fn loss_grad(&self, sample: &Sample) -> Result<(f64, Vec<f64>)> {
        let mut g = vec![0.0; self.dim()];
        let mut loss = 0.0;
        for (b, w) in &sample.batches {
            let (l, gb) = loss_and_grad(self.model, b)?;
            loss += w * l;
            super::lanczos::axpy(&mut g, *w, &self.flatten(&gb)?);
        }
        Ok((loss, g))
    }

    /// The Hessian of the sample's weighted loss at the current parameters, as exact products
    /// `H v` (its batches' losses linearized once: the value planes every product shares are
    /// computed by the first and kept, within [`PRIMAL_BUDGET`] bytes for the whole sample).
    pub fn hessian<'s>(&'s self, sample: &'s Sample) -> Result<Hessian<'s>> {
        let budget = PRIMAL_BUDGET / sample.batches.len().max(1);
        let batches: Vec<(&Batch, f64)> = sample.batches.iter().map(|(b, w)| (b, *w)).collect();
        Ok(Hessian {
            space: self,
            sample,
            loss: Linearized::new(self.model, &batches, budget)?,
        })
    }

    /// The gradient of one record's mean loss.
    pub fn record_grad(&self, rec: &Encoded, pad_id: u32) -> Result<Vec<f64>> {
        let (_, g) = loss_and_grad(self.model, &Batch::new(&[rec], pad_id))?;
        self.flatten(&g)
    }

    /// Sets the group's parameters to `flat`.
    fn set(&self, flat: &[f64]) -> Result<()> {
        for (n, t) in self.unflatten(flat)? {
            self.model.set_param(&n, &t)?;
        }
        Ok(())
    }

    fn current(&self) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.dim());
        for n in &self.names {
            let t = self
                .model
                .get(n)
                .ok_or_else(|| candle_core::Error::Msg(format!("no parameter {n}")))?;
            out.extend(t.flatten_all()?.to_vec1::<f64>()?);
        }
        Ok(out)
    }
}

/// The Hessian of a sample's weighted loss at one point ([`Space::hessian`]).
pub struct Hessian<'a> {
    space: &'a Space<'a>,
    sample: &'a Sample,
    loss: Linearized<'a>,
}

impl Hessian<'_> {
    /// Exact `H v`.
    pub fn apply(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        let hv = self.loss.hvp(&self.space.unflatten(v)?)?;
        self.space.flatten(&hv)
    }
}

/// A seeded random unit vector.
pub fn random_unit(dim: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let v: Vec<f64> = (0..dim).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let n = norm(&v);
    v.into_iter().map(|x| x / n).collect()
}

/// The products' symmetry `|uᵀHv − vᵀHu|` and their agreement with central finite
/// differences of the gradient along `v`, for seeded random unit `u`, `v`.
pub fn check_hvp(hessian: &mut Hessian, seed: u64) -> Result<HvpCheck> {
    let (space, sample) = (hessian.space, hessian.sample);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (u, v) = (
        random_unit(space.dim(), &mut rng),
        random_unit(space.dim(), &mut rng),
    );
    let hv = hessian.apply(&v)?;
    let hu = hessian.apply(&u)?;
    let symmetry = (dot(&u, &hv) - dot(&v, &hu)).abs() / (norm(&u) * norm(&hv));
    let theta = space.current()?;
    let shifted = |s: f64| -> Result<Vec<f64>> {
        let p: Vec<f64> = theta.iter().zip(&v).map(|(t, d)| t + s * d).collect();
        space.set(&p)?;
        Ok(space.loss_grad(sample)?.1)
    };
    let fd = (|| {
        let (gp, gm) = (shifted(FD_STEP)?, shifted(-FD_STEP)?);
        Ok::<_, candle_core::Error>(
            gp.iter()
                .zip(&gm)
                .map(|(a, b)| (a - b) / (2.0 * FD_STEP))
                .collect::<Vec<f64>>(),
        )
    })();
    space.set(&theta)?;
    let fd = fd?;
    let max_abs = |x: &mut dyn Iterator<Item = f64>| x.fold(0.0, |m: f64, y| m.max(y.abs()));
    let diff = max_abs(&mut hv.iter().zip(&fd).map(|(a, b)| a - b));
    Ok(HvpCheck {
        symmetry,
        finite_difference_relative_error: diff / max_abs(&mut hv.iter().copied()),
        finite_difference_step: FD_STEP,
    })
}

pub fn spectrum(hessian: &mut Hessian, steps: usize, seed: u64) -> Result<Spectrum> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_1a2c);
    let dim = hessian.space.dim();
    let start = random_unit(dim, &mut rng);
    let mut op = |x: &[f64]| hessian.apply(x);
    let res = lanczos(&mut op, &start, steps.min(dim))?;
    Ok(Spectrum {
        steps: res.steps,
        lambda_max: *res.ritz_values.last().unwrap_or(&0.0),
        lambda_min: *res.ritz_values.first().unwrap_or(&0.0),
        ritz_values: res.ritz_values,
    })
}

/// `gᵀ(H + λI)⁻¹g` for each record, g the gradient of the record's own loss.
#[allow(clippy::too_many_arguments)] // the parts of one CG solve per record; a struct would only rename them
pub fn self_influence(
    hessian: &mut Hessian,
    records: &[&Encoded],
    pad_id: u32,
    damping: f64,
    tol: f64,
    max_iter: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<SelfInfluence>> {
    let mut out = Vec::new();
    for rec in records {
        let g = hessian.space.record_grad(rec, pad_id)?;
        let mut op = |x: &[f64]| hessian.apply(x);
        let cg = conjugate_gradients(&mut op, &g, damping, tol, max_iter)?;
        out.push(SelfInfluence {
            id: rec.id.clone(),
            value: dot(&g, &cg.x),
            gradient_norm: norm(&g),
            cg,
        });
        progress(1);
    }
    Ok(out)
}
