//! Activation functions as kernel statements, with the reference's formulas.

use super::*;

/// `v = 1 / (1 + exp(−v))`, as the reference computes it.
pub(super) fn emit_logistic(kb: &mut KernelBuilder, v: Local, t: Local) {
    kb.assign(t, Expr::Unary { op: UnOp::Neg, a: v.into() });
    kb.assign(t, Expr::Call { f: MathFn::Exp, arg: t.into() });
    kb.binary(t, BinOp::Add, 1.0f32, t);
    kb.binary(v, BinOp::Div, 1.0f32, t);
}

pub(super) fn check_activation(a: Activation) -> Result<(), String> {
    use Activation::*;
    match a {
        Linear | Leaky | Relu | Logistic | Relu6 | Hardtan => Ok(()),
        other => Err(format!("activation={other}")),
    }
}

/// `v = act(v)` in place (`t` a scratch local), with the reference's formulas.
pub(super) fn emit_activation(kb: &mut KernelBuilder, v: Local, t: Local, act: Activation) {
    let select = |cmp, rhs: f32, then: Operand, otherwise: Operand| Expr::Select {
        cmp,
        lhs: v.into(),
        rhs: rhs.into(),
        then,
        otherwise,
    };
    match act {
        Activation::Leaky => {
            kb.binary(t, BinOp::Mul, 0.1f32, v);
            kb.assign(v, select(Cmp::Gt, 0.0, v.into(), t.into()));
        }
        Activation::Relu => kb.assign(v, select(Cmp::Gt, 0.0, v.into(), 0.0f32.into())),
        Activation::Logistic => emit_logistic(kb, v, t),
        // f32::clamp: below min → min, then above max → max
        Activation::Relu6 | Activation::Hardtan => {
            let (lo, hi) = if act == Activation::Relu6 { (0.0f32, 6.0f32) } else { (-1.0, 1.0) };
            kb.assign(v, select(Cmp::Lt, lo, lo.into(), v.into()));
            kb.assign(v, select(Cmp::Gt, hi, hi.into(), v.into()));
        }
        _ => {} // Linear (others are rejected by check_activation)
    }
}

/// [`emit_activation`] on an `f32x4` (`t`, `c` scratch vectors); not for logistic.
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
        Activation::Leaky => {
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
        _ => {} // Linear; logistic takes the scalar path
    }
}
