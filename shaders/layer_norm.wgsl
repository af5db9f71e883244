// Row kernels, one workgroup per token row:
//
//   layer_norm      x = LayerNorm(x)                then quantize x
//   add_layer_norm  x = LayerNorm(x + residual)     then quantize x
//   quantize_rows   quantize x
//
// "quantize" writes the row as int8 for the next int8 GEMM, as the CPU path does
// (kernels::quantize_rows): scale = max|x| / 127 (1 for a zero row), q = round(x / scale)
// half away from zero, clamped to [-127, 127], packed four to a u32 (byte 0 = lowest column).
// LayerNorm takes the mean first and then the mean squared deviation (two passes, as the CPU
// kernels do). Rows are h wide, h a multiple of 4; each thread owns the same groups of four
// columns in every pass, so it rereads only what it wrote itself.

struct Params {
    rows: u32,
    h: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> residual: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> q: array<u32>;
@group(0) @binding(5) var<storage, read_write> qs: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

const WG: u32 = 128u;

var<workgroup> red: array<f32, 128>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn reduce_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn quantize_one(v: f32, inv: f32) -> u32 {
    let t = clamp(v * inv, -127.0, 127.0);
    let i = i32(t + select(-0.5, 0.5, t >= 0.0));
    return u32(i) & 0xffu;
}

// Quantizes row `row` of x (already final) into q / qs; `amax` is the thread's partial max|x|.
fn quantize_row(row: u32, lid: u32, amax_part: f32) {
    let amax = reduce_max(lid, amax_part);
    let scale = select(1.0, amax / 127.0, amax > 0.0);
    let inv = 1.0 / scale;
    let h4 = p.h / 4u;
    let base = row * p.h;
    for (var g = lid; g < h4; g += WG) {
        let c = base + 4u * g;
        q[row * h4 + g] = quantize_one(x[c], inv)
            | (quantize_one(x[c + 1u], inv) << 8u)
            | (quantize_one(x[c + 2u], inv) << 16u)
            | (quantize_one(x[c + 3u], inv) << 24u);
    }
    if lid == 0u {
        qs[row] = scale;
    }
}

fn normalize(row: u32, lid: u32, add: bool) {
    let base = row * p.h;
    let h4 = p.h / 4u;
    var part = 0.0;
    for (var g = lid; g < h4; g += WG) {
        for (var t = 0u; t < 4u; t++) {
            let c = base + 4u * g + t;
            var v = x[c];
            if add {
                v += residual[c];
                x[c] = v;
            }
            part += v;
        }
    }
    let mean = reduce_sum(lid, part) / f32(p.h);
    part = 0.0;
    for (var g = lid; g < h4; g += WG) {
        for (var t = 0u; t < 4u; t++) {
            let d = x[base + 4u * g + t] - mean;
            part += d * d;
        }
    }
    let inv = 1.0 / sqrt(reduce_sum(lid, part) / f32(p.h) + p.eps);
    var amax = 0.0;
    for (var g = lid; g < h4; g += WG) {
        for (var t = 0u; t < 4u; t++) {
            let j = 4u * g + t;
            let v = (x[base + j] - mean) * inv * gamma[j] + beta[j];
            x[base + j] = v;
            amax = max(amax, abs(v));
        }
    }
    quantize_row(row, lid, amax);
}

@compute @workgroup_size(128, 1, 1)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    normalize(wid.x, lid.x, false);
}

@compute @workgroup_size(128, 1, 1)
fn add_layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    normalize(wid.x, lid.x, true);
}

@compute @workgroup_size(128, 1, 1)
fn quantize_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.x;
    let base = row * p.h;
    var amax = 0.0;
    for (var g = lid.x; g < p.h / 4u; g += WG) {
        for (var t = 0u; t < 4u; t++) {
            amax = max(amax, abs(x[base + 4u * g + t]));
        }
    }
    quantize_row(row, lid.x, amax);
}
