// GELU gate (gemma3), in place: gate[t][i] = gelu(gate[t][i]) * up[t][i], GELU's tanh form.
// As ggml's CPU path (a table over f16 inputs): the input and its GELU rounded to f16,
// except at and beyond +-10, where GELU is 0 or x.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;

const SQRT_2_OVER_PI: f32 = 0.7978846;
const COEF_A: f32 = 0.044715;

fn to_f16(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x >= params.n) {
        return;
    }
    let i = gid.y * params.n + gid.x;
    let x = gate[i];
    var y = x;
    if (x <= -10.0) {
        y = 0.0;
    } else if (x < 10.0) {
        let h = to_f16(x);
        // |argument| < 45 here; tanh is 1 to f32 precision past 10, and the clamp keeps an
        // exp-based tanh from dividing inf by inf.
        let a = clamp(SQRT_2_OVER_PI * h * (1.0 + COEF_A * h * h), -10.0, 10.0);
        y = to_f16(0.5 * h * (1.0 + tanh(a)));
    }
    gate[i] = y * up[i];
}
