//! Operations with a constant operand — a frozen parameter, a mask, a one-hot target — whose
//! backward computes the gradient of the other operand only. candle's own backward computes
//! both operands' gradients of every matmul, add and multiply, and throws away those of
//! tensors outside the graph: with the embedding trainable, every block's weight gradient was
//! computed and dropped at each step (one extra matmul per linear layer), and an exact
//! Hessian-vector product paid for it twice. Each backward here is again made of these
//! operations, so derivatives of any order stay exact (float64 HVPs go through them) and skip
//! the same work. When the "constant" operand is in fact tracked (a trainable weight), each
//! function falls back to candle's ordinary operation and both gradients flow.
//! This module owns that choice and these ops' arithmetic; it knows nothing of GPT-2.

use candle_core::backend::BackendStorage;
use candle_core::op::{Add, Mul};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// `x @ w` for `x` `[.., K]` (leading dimensions are rows), `w` `[K, N]`.
pub fn matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if w.track_op() {
        return rows(x, |x2| x2.matmul(w));
    }
    x.contiguous()?.apply_op2(w, ConstMatmul)
}

/// `x @ w + b` for `x` `[.., K]` (leading dimensions are rows), `w` `[K, N]`, `b` `[N]`, in
/// one pass over the output. With a constant weight and bias no reshape enters the graph
/// (candle's backward of a reshape allocates two tensors of its size).
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if w.track_op() || b.track_op() {
        return rows(x, |x2| x2.matmul(w)?.broadcast_add(b));
    }
    x.contiguous()?.apply_op3(w, b, ConstLinear)
}

/// `f` applied to `x` viewed as `[M, K]`, its result viewed back with `x`'s leading dimensions.
fn rows(x: &Tensor, f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if dims.len() == 2 {
        return f(x);
    }
    let k = dims.last().copied().unwrap_or(1);
    let y = f(&x.reshape((x.elem_count() / k.max(1), k))?)?;
    let mut out = dims;
    if let Some(last) = out.last_mut() {
        *last = y.dim(1)?;
    }
    y.reshape(out)
}

/// `x + c`, `c` broadcast to `x`'s shape.
pub fn add(x: &Tensor, c: &Tensor) -> Result<Tensor> {
    binary(x, c, Kind::Add)
}

/// `x · c` elementwise, `c` broadcast to `x`'s shape.
pub fn mul(x: &Tensor, c: &Tensor) -> Result<Tensor> {
    binary(x, c, Kind::Mul)
}

fn binary(x: &Tensor, c: &Tensor, kind: Kind) -> Result<Tensor> {
    if c.track_op() {
        return match kind {
            Kind::Add => x.broadcast_add(c),
            Kind::Mul => x.broadcast_mul(c),
        };
    }
    x.apply_op2(&c.broadcast_as(x.shape())?, ConstBinary(kind))
}

/// candle's matmul dimensions: batch, rows, columns, inner.
type Bmnk = (usize, usize, usize, usize);

/// `(batch, m, n, k)` of `x @ w` with `x` `[.., K]` (contiguous; its leading dimensions are
/// rows), `w` `[K, N]`; the layout of `x` as `[M, K]`; the output shape `[.., N]`.
fn mnk(l1: &Layout, l2: &Layout, op: &str) -> Result<(Bmnk, Layout, Shape)> {
    let (a, b) = (l1.dims(), l2.dims());
    let k = a.last().copied().unwrap_or(0);
    if a.is_empty() || b.len() != 2 || k != b[0] {
        candle_core::bail!("{op}: expected [.., K] @ [K, N], got {a:?} @ {b:?}");
    }
    let m = l1.shape().elem_count() / k.max(1);
    let x2 = if a.len() == 2 {
        l1.clone()
    } else {
        match l1.contiguous_offsets() {
            Some((start, _)) => Layout::contiguous_with_offset((m, k), start),
            None => candle_core::bail!("{op}: a batched left operand must be contiguous"),
        }
    };
    let mut out = a.to_vec();
    out[a.len() - 1] = b[1];
    Ok(((1, m, b[1], k), x2, Shape::from(out)))
}

struct ConstMatmul;

impl CustomOp2 for ConstMatmul {
    fn name(&self) -> &'static str {
        "matmul-constant-rhs"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bmnk, x2, shape) = mnk(l1, l2, self.name())?;
        Ok((s1.matmul(s2, bmnk, &x2, l2)?, shape))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(matmul(grad, &w.t()?)?), None))
    }
}

struct ConstLinear;

impl CustomOp3 for ConstLinear {
    fn name(&self) -> &'static str {
        "linear-constant-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (bmnk, x2, shape) = mnk(l1, l2, self.name())?;
        let n = bmnk.2;
        let Some((lo, hi)) = l3.contiguous_offsets() else {
            candle_core::bail!("{}: bias must be contiguous", self.name())
        };
        if hi - lo != n {
            candle_core::bail!(
                "{}: bias has {} values, output {n} columns",
                self.name(),
                hi - lo
            );
        }
        let mut y = s1.matmul(s2, bmnk, &x2, l2)?;
        match (&mut y, s3) {
            (CpuStorage::F32(y), CpuStorage::F32(bias)) => add_rows(y, &bias[lo..hi]),
            (CpuStorage::F64(y), CpuStorage::F64(bias)) => add_rows(y, &bias[lo..hi]),
            _ => candle_core::bail!("{}: float32 or float64 of one dtype only", self.name()),
        }
        Ok((y, shape))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        Ok((Some(matmul(grad, &w.t()?)?), None, None))
    }
}

fn add_rows<T: Copy + std::ops::AddAssign>(y: &mut [T], bias: &[T]) {
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Add,
    Mul,
}

/// `x ∘ c` with `c` already broadcast to `x`'s shape.
struct ConstBinary(Kind);

impl CustomOp2 for ConstBinary {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Add => "add-constant",
            Kind::Mul => "mul-constant",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match self.0 {
            Kind::Add => s1.binary_impl::<Add>(s2, l1, l2)?,
            Kind::Mul => s1.binary_impl::<Mul>(s2, l1, l2)?,
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let gx = match self.0 {
            Kind::Add => grad.clone(),
            Kind::Mul => grad.apply_op2(c, ConstBinary(Kind::Mul))?,
        };
        Ok((Some(gx), None))
    }
}
