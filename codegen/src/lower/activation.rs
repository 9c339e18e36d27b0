//! Activation functions as kernel statements, with the reference's formulas
//! (`ternc_ir::Activation::apply`, operation for operation, so results match it bit
//! for bit: the math helpers are the same `f32` functions).
//!
//! Every elementwise activation has a scalar form ([`emit_activation`]); leaky, relu,
//! relu6 and hardtan also have a vector form, every other one runs on vectors lane by
//! lane (extract, scalar formula, insert): four scalar calls for the ones that need
//! `exp`, `tanh` or `log1p` (logistic, swish, mish, ...). The channel-wise ones
//! (`normalize_channels*`) are not elementwise: the element forms leave the value as
//! is and the layer appends [`Lowerer::channel_activation`] over its whole output.

use super::*;

/// `v = 1 / (1 + exp(−v))`, as the reference computes it.
pub(super) fn emit_logistic(kb: &mut KernelBuilder, v: Local, t: Local) {
    kb.assign(t, Expr::Unary { op: UnOp::Neg, a: v.into() });
    kb.assign(t, Expr::Call { f: MathFn::Exp, arg: t.into() });
    kb.binary(t, BinOp::Add, 1.0f32, t);
    kb.binary(v, BinOp::Div, 1.0f32, t);
}

/// Every activation lowers (elementwise ones in the layer's loop, channel-wise ones
/// as [`Lowerer::channel_activation`]); kept as the one place a backend limit would go.
pub(super) fn check_activation(_: Activation) -> Result<(), String> {
    Ok(())
}

/// Whether [`emit_vector_activation`] has a lane-wise vector form for `act` (the
/// others run lane by lane on scalars).
pub(super) fn has_vector_form(act: Activation) -> bool {
    use Activation::*;
    matches!(act, Linear | Leaky | RevLeaky | Relu | Relu6 | Hardtan) || act.is_channelwise()
}

fn call(kb: &mut KernelBuilder, dst: Local, f: MathFn, arg: Local) {
    kb.assign(dst, Expr::Call { f, arg: arg.into() });
}

fn select(
    kb: &mut KernelBuilder,
    dst: Local,
    cmp: Cmp,
    lhs: impl Into<Operand>,
    rhs: impl Into<Operand>,
    then: impl Into<Operand>,
    otherwise: impl Into<Operand>,
) {
    let (lhs, rhs, then, otherwise) = (lhs.into(), rhs.into(), then.into(), otherwise.into());
    kb.assign(dst, Expr::Select { cmp, lhs, rhs, then, otherwise });
}

/// `v = 2 / (1 + exp(k·v)) − 1` into `t` (loggy with `k = −1`, tanh with `k = −2`).
fn two_over_one_plus_exp(kb: &mut KernelBuilder, t: Local, v: Local, k: f32) {
    if k == -1.0 {
        kb.assign(t, Expr::Unary { op: UnOp::Neg, a: v.into() });
    } else {
        kb.binary(t, BinOp::Mul, k, v);
    }
    call(kb, t, MathFn::Exp, t);
    kb.binary(t, BinOp::Add, 1.0f32, t);
    kb.binary(t, BinOp::Div, 2.0f32, t);
    kb.binary(t, BinOp::Sub, t, 1.0f32);
}

/// `v = act(v)` in place (`t` a scratch local; activations that need more scratch
/// declare it), with the reference's formulas. Channel-wise activations leave `v`.
pub(super) fn emit_activation(kb: &mut KernelBuilder, v: Local, t: Local, act: Activation) {
    use Activation::*;
    match act {
        Linear | NormChan | NormChanSoftmax | NormChanSoftmaxMaxval => {}
        Leaky | RevLeaky | Relie => {
            let k = if act == Relie { 0.01f32 } else { 0.1 };
            kb.binary(t, BinOp::Mul, k, v);
            select(kb, v, Cmp::Gt, v, 0.0f32, v, t);
        }
        Relu => select(kb, v, Cmp::Gt, v, 0.0f32, v, 0.0f32),
        Logistic => emit_logistic(kb, v, t),
        // f32::clamp: below min → min, then above max → max
        Relu6 | Hardtan => {
            let (lo, hi) = if act == Relu6 { (0.0f32, 6.0f32) } else { (-1.0, 1.0) };
            select(kb, v, Cmp::Lt, v, lo, lo, v);
            select(kb, v, Cmp::Gt, v, hi, hi, v);
        }
        Loggy => {
            two_over_one_plus_exp(kb, t, v, -1.0);
            kb.assign(v, Expr::Copy(t.into()));
        }
        Tanh => {
            two_over_one_plus_exp(kb, t, v, -2.0);
            kb.assign(v, Expr::Copy(t.into()));
        }
        Ramp => {
            // x > 0 ? x + 0.1·x : 0.1·x
            let u = kb.local(Ty::F32);
            kb.binary(t, BinOp::Mul, 0.1f32, v);
            kb.binary(u, BinOp::Add, v, t);
            select(kb, v, Cmp::Gt, v, 0.0f32, u, t);
        }
        Elu | Selu => {
            // x >= 0 ? x : exp(x) − 1 (selu: 1.0507·x : 1.0507·1.6732·(exp(x) − 1))
            call(kb, t, MathFn::Exp, v);
            kb.binary(t, BinOp::Sub, t, 1.0f32);
            if act == Selu {
                let u = kb.local(Ty::F32);
                kb.binary(t, BinOp::Mul, 1.0507f32 * 1.6732f32, t);
                kb.binary(u, BinOp::Mul, 1.0507f32, v);
                select(kb, v, Cmp::Ge, v, 0.0f32, u, t);
            } else {
                select(kb, v, Cmp::Ge, v, 0.0f32, v, t);
            }
        }
        Gelu => {
            // 0.5·x·(1 + tanh(0.797885·x + 0.035677·x³)); powi(3) is x·(x·x)
            let u = kb.local(Ty::F32);
            kb.binary(t, BinOp::Mul, v, v);
            kb.binary(t, BinOp::Mul, v, t);
            kb.binary(t, BinOp::Mul, 0.035677f32, t);
            kb.binary(u, BinOp::Mul, 0.797885f32, v);
            kb.binary(t, BinOp::Add, u, t);
            call(kb, t, MathFn::Tanh, t);
            kb.binary(t, BinOp::Add, 1.0f32, t);
            kb.binary(u, BinOp::Mul, 0.5f32, v);
            kb.binary(v, BinOp::Mul, u, t);
        }
        Plse => {
            // x < −4 ? 0.01·(x + 4) : x > 4 ? 0.01·(x − 4) + 1 : 0.125·x + 0.5
            let (u, w) = (kb.local(Ty::F32), kb.local(Ty::F32));
            kb.binary(t, BinOp::Add, v, 4.0f32);
            kb.binary(t, BinOp::Mul, 0.01f32, t);
            kb.binary(u, BinOp::Sub, v, 4.0f32);
            kb.binary(u, BinOp::Mul, 0.01f32, u);
            kb.binary(u, BinOp::Add, u, 1.0f32);
            kb.binary(w, BinOp::Mul, 0.125f32, v);
            kb.binary(w, BinOp::Add, w, 0.5f32);
            select(kb, w, Cmp::Gt, v, 4.0f32, u, w);
            select(kb, v, Cmp::Lt, v, -4.0f32, t, w);
        }
        Lhtan => {
            // x < 0 ? 0.001·x : x > 1 ? 0.001·(x − 1) + 1 : x
            let u = kb.local(Ty::F32);
            kb.binary(t, BinOp::Mul, 0.001f32, v);
            kb.binary(u, BinOp::Sub, v, 1.0f32);
            kb.binary(u, BinOp::Mul, 0.001f32, u);
            kb.binary(u, BinOp::Add, u, 1.0f32);
            select(kb, u, Cmp::Gt, v, 1.0f32, u, v);
            select(kb, v, Cmp::Lt, v, 0.0f32, t, u);
        }
        Stair => {
            // n = floor(x); (n as i64) even ? floor(x/2) : (x − n) + floor(x/2). The
            // parity test in floats: floor(n/2)·2 == n, and odd for n ≥ 2⁶³ (the cast
            // saturates to i64::MAX); NaN is odd here and even there, NaN either way.
            let (n, h, e) = (kb.local(Ty::F32), kb.local(Ty::F32), kb.local(Ty::F32));
            call(kb, n, MathFn::Floor, v);
            kb.binary(h, BinOp::Div, v, 2.0f32);
            call(kb, h, MathFn::Floor, h);
            kb.binary(e, BinOp::Mul, n, 0.5f32);
            call(kb, e, MathFn::Floor, e);
            kb.binary(e, BinOp::Mul, e, 2.0f32);
            kb.binary(t, BinOp::Sub, v, n);
            kb.binary(t, BinOp::Add, t, h);
            select(kb, h, Cmp::Eq, e, n, h, t);
            // (i64::MAX as f32 is 2⁶³)
            select(kb, v, Cmp::Ge, n, i64::MAX as f32, t, h);
        }
        Swish => {
            // x·logistic(x)
            kb.assign(t, Expr::Unary { op: UnOp::Neg, a: v.into() });
            call(kb, t, MathFn::Exp, t);
            kb.binary(t, BinOp::Add, 1.0f32, t);
            kb.binary(t, BinOp::Div, 1.0f32, t);
            kb.binary(v, BinOp::Mul, v, t);
        }
        Mish => {
            // softplus with threshold 20, then x·tanh(sp) as 2/(1 + exp(−2·sp)) − 1
            let u = kb.local(Ty::F32);
            call(kb, t, MathFn::Exp, v);
            call(kb, u, MathFn::Log1p, t);
            select(kb, u, Cmp::Lt, v, -20.0f32, t, u);
            select(kb, u, Cmp::Gt, v, 20.0f32, v, u);
            two_over_one_plus_exp(kb, t, u, -2.0);
            kb.binary(v, BinOp::Mul, v, t);
        }
        HardMish => {
            // x > 0 ? x : x > −2 ? x·x/2 + x : 0
            kb.binary(t, BinOp::Mul, v, v);
            kb.binary(t, BinOp::Div, t, 2.0f32);
            kb.binary(t, BinOp::Add, t, v);
            select(kb, t, Cmp::Gt, v, -2.0f32, t, 0.0f32);
            select(kb, v, Cmp::Gt, v, 0.0f32, v, t);
        }
        HardSwish => {
            // x·clamp(x + 3, 0, 6)/6
            kb.binary(t, BinOp::Add, v, 3.0f32);
            select(kb, t, Cmp::Lt, t, 0.0f32, 0.0f32, t);
            select(kb, t, Cmp::Gt, t, 6.0f32, 6.0f32, t);
            kb.binary(t, BinOp::Mul, v, t);
            kb.binary(v, BinOp::Div, t, 6.0f32);
        }
    }
}

/// [`emit_activation`] on an `f32x4` (`t`, `c` scratch vectors): lane-wise vector
/// operations where [`has_vector_form`], else lane by lane.
pub(super) fn emit_vector_activation(kb: &mut KernelBuilder, v: Local, t: Local, c: Local, act: Activation) {
    let select = |cmp, rhs: Local, then: Local, otherwise: Local| Expr::Select {
        cmp,
        lhs: v.into(),
        rhs: rhs.into(),
        then: then.into(),
        otherwise: otherwise.into(),
    };
    let splat = |kb: &mut KernelBuilder, dst: Local, x: f32| kb.assign(dst, Expr::Splat(Operand::F32(x)));
    match act {
        Activation::Leaky | Activation::RevLeaky => {
            splat(kb, c, 0.1);
            kb.binary(t, BinOp::Mul, c, v);
            splat(kb, c, 0.0);
            kb.assign(v, select(Cmp::Gt, c, v, t));
        }
        Activation::Relu => {
            splat(kb, c, 0.0);
            kb.assign(v, select(Cmp::Gt, c, v, c));
        }
        Activation::Relu6 | Activation::Hardtan => {
            let (lo, hi) = if act == Activation::Relu6 { (0.0f32, 6.0f32) } else { (-1.0, 1.0) };
            splat(kb, c, lo);
            kb.assign(v, select(Cmp::Lt, c, c, v));
            splat(kb, c, hi);
            kb.assign(v, select(Cmp::Gt, c, c, v));
        }
        _ if has_vector_form(act) => {} // linear, channel-wise
        _ => {
            let (x, s) = (kb.local(Ty::F32), kb.local(Ty::F32));
            for lane in 0..4 {
                kb.assign(x, Expr::Extract { v: v.into(), lane });
                emit_activation(kb, x, s, act);
                kb.assign(v, Expr::Insert { v: v.into(), lane, x: x.into() });
            }
        }
    }
}
