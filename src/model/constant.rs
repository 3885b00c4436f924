//! Operations with a constant operand — a frozen parameter, a mask, a detached shift — whose
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

/// `x @ w` for `x` `[M, K]`, `w` `[K, N]`.
pub fn matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if w.track_op() {
        return x.matmul(w);
    }
    x.apply_op2(w, ConstMatmul)
}

/// `x @ w + b` for `x` `[M, K]`, `w` `[K, N]`, `b` `[N]`, in one pass over the output.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if w.track_op() || b.track_op() {
        return x.matmul(w)?.broadcast_add(b);
    }
    x.apply_op3(w, b, ConstLinear)
}

/// `x + c`, `c` broadcast to `x`'s shape.
pub fn add(x: &Tensor, c: &Tensor) -> Result<Tensor> {
    binary(x, c, Kind::Add)
}

/// `x − c`, `c` broadcast to `x`'s shape.
pub fn sub(x: &Tensor, c: &Tensor) -> Result<Tensor> {
    if c.track_op() {
        return x.broadcast_sub(c);
    }
    binary(x, &c.neg()?, Kind::Add)
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

/// `(batch, m, n, k)` of a 2-D matmul, checked.
fn mnk(l1: &Layout, l2: &Layout, op: &str) -> Result<(usize, usize, usize, usize)> {
    let (a, b) = (l1.dims(), l2.dims());
    if a.len() != 2 || b.len() != 2 || a[1] != b[0] {
        candle_core::bail!("{op}: expected [M, K] @ [K, N], got {a:?} @ {b:?}");
    }
    Ok((1, a[0], b[1], a[1]))
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
        let (b, m, n, k) = mnk(l1, l2, self.name())?;
        Ok((s1.matmul(s2, (b, m, n, k), l1, l2)?, Shape::from((m, n))))
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
        let (b, m, n, k) = mnk(l1, l2, self.name())?;
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
        let mut y = s1.matmul(s2, (b, m, n, k), l1, l2)?;
        match (&mut y, s3) {
            (CpuStorage::F32(y), CpuStorage::F32(bias)) => add_rows(y, &bias[lo..hi]),
            (CpuStorage::F64(y), CpuStorage::F64(bias)) => add_rows(y, &bias[lo..hi]),
            _ => candle_core::bail!("{}: float32 or float64 of one dtype only", self.name()),
        }
        Ok((y, Shape::from((m, n))))
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
