// int8 GEMM of a Linear layer with its epilogue:
//
//   y[m, n] = act(f32(sum_k xq[m, k] * wq[n, k]) * xs[m] * ws[n] + bias[n])
//
// xq: activations quantized per row (xs: one scale per row), wq: weights quantized per output
// channel (ws: one scale per channel), both signed int8 packed four to a u32 along k (byte 0 is
// the lowest k), rows padded with zeros to k4 words. The accumulator is an exact i32.
//
// One workgroup computes a 64 x 64 tile of y; each of its 16 x 16 threads owns 4 x 4 outputs
// (rows ty + 16i, columns tx + 16j, so neighbouring threads store neighbouring columns). The k
// axis advances 8 words (32 int8 values) at a time through workgroup memory. dot4I8Packed is a
// single instruction where the adapter has integer dot products (SPIR-V DotProductInput4x8BitPacked,
// DP4a); elsewhere naga expands it to four sign-extending byte extracts and multiply-adds.

requires packed_4x8_integer_dot_product;

struct Params {
    m: u32,
    n: u32,
    k4: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> xq: array<u32>;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> wq: array<u32>;
@group(0) @binding(3) var<storage, read> ws: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 8u;

// Tiles stored k-major ([kk][row]) so that the inner loop reads consecutive rows.
var<workgroup> xt: array<u32, 512>;
var<workgroup> wt: array<u32, 512>;

const ACT_NONE: u32 = 0u;
const ACT_GELU_ERF: u32 = 1u;
const ACT_GELU_TANH: u32 = 2u;

// erf, Abramowitz & Stegun 7.1.26 (absolute error < 1.5e-7), as the CPU kernels use.
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.0614054 * t - 1.4531521) * t + 1.4214138) * t - 0.28449674) * t + 0.2548296) * t;
    return sign(x) * (1.0 - poly * exp(-a * a));
}

fn activate(v: f32, act: u32) -> f32 {
    if act == ACT_GELU_ERF {
        return 0.5 * v * (1.0 + erf_approx(v * 0.70710678));
    }
    if act == ACT_GELU_TANH {
        let u = 0.7978846 * (v + 0.044715 * v * v * v);
        // tanh through exp of a non-positive argument: no overflow for large |u|.
        let e = exp(-2.0 * abs(u));
        let th = (1.0 - e) / (1.0 + e);
        return 0.5 * v * (1.0 + select(-th, th, u >= 0.0));
    }
    return v;
}

// Writes one output row's four columns (tx + 16j) of the thread.
fn store_row(row: u32, n0: u32, tx: u32, acc: vec4<i32>, act: u32) {
    if row >= p.m {
        return;
    }
    let sx = xs[row];
    for (var j = 0u; j < 4u; j++) {
        let col = n0 + tx + 16u * j;
        if col < p.n {
            let v = f32(acc[j]) * (sx * ws[col]) + bias[col];
            y[row * p.n + col] = activate(v, act);
        }
    }
}

fn dot4x4(a: u32, b0: u32, b1: u32, b2: u32, b3: u32) -> vec4<i32> {
    return vec4<i32>(dot4I8Packed(a, b0), dot4I8Packed(a, b1), dot4I8Packed(a, b2), dot4I8Packed(a, b3));
}

fn gemm(wid: vec3<u32>, lid: vec3<u32>, act: u32) {
    let tx = lid.x;
    let ty = lid.y;
    let flat = ty * 16u + tx;
    let m0 = wid.y * TM;
    let n0 = wid.x * TN;

    // Row i of the thread's 4 x 4 block in acc_i (written out, not indexed, so that every
    // compiler keeps them in registers).
    var acc0 = vec4<i32>(0);
    var acc1 = vec4<i32>(0);
    var acc2 = vec4<i32>(0);
    var acc3 = vec4<i32>(0);

    for (var k0 = 0u; k0 < p.k4; k0 += TK) {
        // 512 words per tile, two per thread.
        for (var s = 0u; s < 2u; s++) {
            let idx = flat + s * 256u;
            let r = idx / TK;
            let kk = idx % TK;
            let k = k0 + kk;
            let row = m0 + r;
            var xv = 0u;
            if row < p.m && k < p.k4 {
                xv = xq[row * p.k4 + k];
            }
            xt[kk * TM + r] = xv;
            let col = n0 + r;
            var wv = 0u;
            if col < p.n && k < p.k4 {
                wv = wq[col * p.k4 + k];
            }
            wt[kk * TN + r] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let xa = kk * TM + ty;
            let wa = kk * TN + tx;
            let b0 = wt[wa];
            let b1 = wt[wa + 16u];
            let b2 = wt[wa + 32u];
            let b3 = wt[wa + 48u];
            acc0 += dot4x4(xt[xa], b0, b1, b2, b3);
            acc1 += dot4x4(xt[xa + 16u], b0, b1, b2, b3);
            acc2 += dot4x4(xt[xa + 32u], b0, b1, b2, b3);
            acc3 += dot4x4(xt[xa + 48u], b0, b1, b2, b3);
        }
        workgroupBarrier();
    }

    store_row(m0 + ty, n0, tx, acc0, act);
    store_row(m0 + ty + 16u, n0, tx, acc1, act);
    store_row(m0 + ty + 32u, n0, tx, acc2, act);
    store_row(m0 + ty + 48u, n0, tx, acc3, act);
}

@compute @workgroup_size(16, 16, 1)
fn gemm_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(wid, lid, ACT_NONE);
}

@compute @workgroup_size(16, 16, 1)
fn gemm_bias_gelu_erf(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(wid, lid, ACT_GELU_ERF);
}

@compute @workgroup_size(16, 16, 1)
fn gemm_bias_gelu_tanh(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm(wid, lid, ACT_GELU_TANH);
}
