// Persona bundles for the browser tests, in the single-blob form src/science/bundle.rs reads:
// "AXBUNDLE", u32 LE version 1, u32 LE manifest length, manifest JSON, zero padding to 8,
// then each array's little-endian bytes, each padded to 8.
//
// `syntheticBundle()` builds a small, fully known bundle for SmolLM2-135M's shape (30 layers,
// hidden 576): the axis is hidden dimension AXIS_DIM at every layer, the PCs are dimensions
// AXIS_DIM, AXIS_DIM+1, AXIS_DIM+2, and each role's coordinates are given below, so a test
// can check the page against numbers it chose itself. `readManifest()` reads any blob's
// manifest (the real bundle's, when the build has one).

export const N_LAYERS = 30;
export const HIDDEN = 576;
export const ANALYSIS_LAYER = 15;
export const AXIS_DIM = 100;
export const DEFAULT_PROJECTION = 5;

/** Role name, category, PC1 (= projection on the axis), PC2. */
export const SYNTHETIC_ROLES = [
  ['tutor', 'assistant-like', 3.0, 0.5],
  ['analyst', 'assistant-like', 2.5, -1.0],
  ['teacher', 'assistant-like', 2.0, 1.5],
  ['pirate', 'human', -0.5, 2.0],
  ['poet', 'human', -1.0, -2.0],
  ['ghost', 'fantastical', -3.0, 1.0],
  ['bard', 'fantastical', -3.5, -0.5],
  ['demon', 'fantastical', -4.5, -1.5],
];
export const EXPLAINED = [0.5, 0.3, 0.1];

/** IEEE half-precision bits of `x` (round to nearest even; enough for the values used here). */
function f16bits(x) {
  const f32 = new Float32Array([x]);
  const u = new Uint32Array(f32.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  let exp = ((u >>> 23) & 0xff) - 127 + 15;
  let mant = u & 0x7fffff;
  if (exp <= 0) return sign; // (flush tiny values to zero)
  if (exp >= 31) throw new Error(`f16 overflow: ${x}`);
  let h = sign | (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h += 1;
  return h;
}

function bytesOf(dtype, values) {
  if (dtype === 'f32') return Buffer.from(new Float32Array(values).buffer);
  if (dtype === 'u32') return Buffer.from(new Uint32Array(values).buffer);
  return Buffer.from(new Uint16Array(values.map(f16bits)).buffer);
}

const pad8 = (n) => (8 - (n % 8)) % 8;

/** Assembles a blob from a manifest (without `arrays`) and [name, dtype, shape, values] arrays. */
export function blob(manifest, arrays) {
  const full = {
    ...manifest,
    arrays: arrays.map(([name, dtype, shape]) => ({ name, file: `${name}.${dtype}`, dtype, shape })),
  };
  const json = Buffer.from(JSON.stringify(full));
  const head = Buffer.alloc(16);
  head.write('AXBUNDLE', 0, 'latin1');
  head.writeUInt32LE(1, 8);
  head.writeUInt32LE(json.length, 12);
  const parts = [head, json, Buffer.alloc(pad8(16 + json.length))];
  for (const [, dtype, shape, values] of arrays) {
    const n = shape.reduce((a, b) => a * b, 1);
    if (values.length !== n) throw new Error(`array of ${values.length} values for shape ${shape}`);
    const b = bytesOf(dtype, values);
    parts.push(b, Buffer.alloc(pad8(b.length)));
  }
  return Buffer.concat(parts);
}

export function syntheticBundle({ sha256 = '' } = {}) {
  const R = SYNTHETIC_ROLES.length;
  const [L, H, K] = [N_LAYERS, HIDDEN, 3];
  const perRole = 2;
  const nDefault = 3;
  const N = R * perRole + nDefault;
  const zeros = (n) => new Array(n).fill(0);
  const perLayer = (fill) => Array.from({ length: L }, () => fill()).flat();
  const basis = (d, scale = 1) => {
    const v = zeros(H);
    v[d] = scale;
    return v;
  };
  const roleOffsets = SYNTHETIC_ROLES.flatMap(([, , pc1, pc2]) =>
    perLayer(() => {
      const v = basis(AXIS_DIM, pc1);
      v[AXIS_DIM + 1] = pc2;
      return v;
    }),
  );
  // Centred and raw percentiles coincide (mu_roles = 0): -6 .. +6 across q = 1..99.
  const pct = perLayer(() => Array.from({ length: 99 }, (_, i) => -6 + (12 * i) / 98));
  const components = [0, 1, 2].flatMap((k) => basis(AXIS_DIM + k));
  const projections = [];
  const meta = [];
  SYNTHETIC_ROLES.forEach(([, , pc1], r) => {
    for (let p = 0; p < perRole; p++) {
      projections.push(...zeros(L).map(() => pc1 + (p ? 0.25 : -0.25)));
      meta.push(r, p, p, 20);
    }
  });
  for (let p = 0; p < nDefault; p++) {
    projections.push(...zeros(L).map(() => DEFAULT_PROJECTION + (p - 1) * 0.5));
    meta.push(R, p, p, 20);
  }
  const manifest = {
    format: 'axiscope-bundle',
    version: 1,
    model: { name: 'SmolLM2 135M Instruct', sha256, n_layers: L, hidden: H },
    analysis_layer: ANALYSIS_LAYER,
    roles: SYNTHETIC_ROLES.map(([name, category]) => ({ name, category, n_rollouts: perRole })),
    default_rollouts: nDefault,
    n_rollouts: N,
    pca_components: K,
    settings: { questions: 2, prompts_per_role: 1, max_new_tokens: 16, temperature: 0.7, top_p: 0.9, repetition_penalty: 1.1, seed: 0 },
    fidelity: null,
  };
  return blob(manifest, [
    ['role_offsets', 'f16', [R, L, H], roleOffsets],
    ['default_vector', 'f32', [L, H], perLayer(() => basis(AXIS_DIM, DEFAULT_PROJECTION))],
    ['mu_roles', 'f32', [L, H], zeros(L * H)],
    ['axis', 'f32', [L, H], perLayer(() => basis(AXIS_DIM, DEFAULT_PROJECTION))],
    ['unit_axis', 'f32', [L, H], perLayer(() => basis(AXIS_DIM))],
    ['mean_token_norm', 'f32', [L], zeros(L).map(() => 20)],
    ['projection_percentiles', 'f32', [L, 99], pct],
    ['raw_projection_percentiles', 'f32', [L, 99], pct],
    ['pca_components', 'f32', [K, H], components],
    ['pca_singular_values', 'f32', [K], [3, 2, 1]],
    ['pca_explained_variance', 'f32', [K], [1.5, 0.9, 0.3]],
    ['pca_explained_variance_ratio', 'f32', [K], EXPLAINED],
    ['pca_role_coords', 'f32', [R, K], SYNTHETIC_ROLES.flatMap(([, , a, b]) => [a, b, 0])],
    ['pca_default_coords', 'f32', [K], [DEFAULT_PROJECTION, 0, 0]],
    ['rollout_projections', 'f16', [N, L], projections],
    ['rollout_meta', 'u32', [N, 4], meta],
  ]);
}

/** The manifest of any bundle blob. */
export function readManifest(buf) {
  if (buf.subarray(0, 8).toString('latin1') !== 'AXBUNDLE') throw new Error('not a bundle blob');
  const len = buf.readUInt32LE(12);
  return JSON.parse(buf.subarray(16, 16 + len).toString('utf8'));
}
