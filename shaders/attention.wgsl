// Multi-head self-attention over packed sequences (no padding: token rows of all sequences are
// concatenated, seqs[b] = (first row, length)), f32 throughout:
//
//   ctx[row, head] = softmax(q k^T / sqrt(dh)) v    over the keys of the row's own sequence
//
// qkv rows are [q | k | v], each `hidden` wide, head h at columns h*DH..(h+1)*DH. Keys past a
// sequence's length are never read: that is the mask. The scores are never stored: each
// thread owns one query row and streams the keys through workgroup memory 32 at a time,
// keeping a running maximum and sum per key (the online softmax of FlashAttention), so memory
// does not grow with T^2.
//
// Dispatch: (ceil(longest / 64), heads, sequences). DH (head size, a multiple of 4, at most
// 64) is an override constant: the loops over a row then have constant bounds and the row's
// q and accumulator, held as vec4s, can stay in registers.

struct Params {
    hidden: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> seqs: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> ctx: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: Params;

override DH: u32 = 32u;

const WG: u32 = 64u;
const KT: u32 = 32u;
const MAX_DH4: u32 = 16u;

var<workgroup> kt: array<vec4<f32>, 512>; // [KT][DH / 4]
var<workgroup> vt: array<vec4<f32>, 512>;

@compute @workgroup_size(64, 1, 1)
fn attention(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let seq = seqs[wid.z];
    let start = seq.x;
    let len = seq.y;
    let qi = wid.x * WG + lid;
    let live = qi < len;
    let dh4 = DH / 4u;
    let h4 = p.hidden / 4u;
    let stride4 = 3u * h4;
    let col4 = wid.y * dh4;

    var q: array<vec4<f32>, MAX_DH4>;
    var acc: array<vec4<f32>, MAX_DH4>;
    for (var d = 0u; d < dh4; d++) {
        acc[d] = vec4<f32>(0.0);
        q[d] = vec4<f32>(0.0);
    }
    if live {
        let base = (start + qi) * stride4 + col4;
        for (var d = 0u; d < dh4; d++) {
            q[d] = qkv[base + d] * p.scale;
        }
    }
    var run_max = -3.0e38;
    var run_sum = 0.0;

    for (var k0 = 0u; k0 < len; k0 += KT) {
        let nk = min(KT, len - k0);
        for (var idx = lid; idx < KT * dh4; idx += WG) {
            let key = idx / dh4;
            var kv = vec4<f32>(0.0);
            var vv = vec4<f32>(0.0);
            if key < nk {
                let base = (start + k0 + key) * stride4 + col4 + idx % dh4;
                kv = qkv[base + h4];
                vv = qkv[base + 2u * h4];
            }
            kt[idx] = kv;
            vt[idx] = vv;
        }
        workgroupBarrier();
        if live {
            for (var j = 0u; j < nk; j++) {
                var s4 = vec4<f32>(0.0);
                for (var d = 0u; d < dh4; d++) {
                    s4 += q[d] * kt[j * dh4 + d];
                }
                let s = s4.x + s4.y + s4.z + s4.w;
                let new_max = max(run_max, s);
                let corr = exp(run_max - new_max);
                let e = exp(s - new_max);
                run_sum = run_sum * corr + e;
                for (var d = 0u; d < dh4; d++) {
                    acc[d] = acc[d] * corr + e * vt[j * dh4 + d];
                }
                run_max = new_max;
            }
        }
        workgroupBarrier();
    }

    if live {
        let inv = 1.0 / run_sum;
        let out = (start + qi) * h4 + col4;
        for (var d = 0u; d < dh4; d++) {
            ctx[out + d] = acc[d] * inv;
        }
    }
}
