//! The Assistant Axis as a llama.cpp control vector: the axis at every layer, scaled to one
//! mean token norm, written as the GGUF file llama.cpp's `--control-vector` reads
//! (docs/method.md, "Steering": `direction.L = n_L * u_L`, the steering step at strength 1).

use super::PersonaVectors;

/// The control vector of `pv`'s axis for a model of `model_hint`'s architecture ("llama",
/// ...); llama.cpp scales it (`--control-vector-scaled`) and picks layers
/// (`--control-vector-layer-range`).
pub fn axis_control_vector(pv: &PersonaVectors, model_hint: &str) -> Vec<u8> {
    let layers: Vec<(usize, Vec<f32>)> = (0..pv.n_layers)
        .map(|l| {
            let n = pv.mean_token_norm[l];
            (l, pv.unit_at(l).iter().map(|u| u * n).collect())
        })
        .collect();
    control_vector_gguf(model_hint, &layers)
}

/// A llama.cpp control vector: a GGUF file (version 3) with `general.architecture =
/// "controlvector"`, `controlvector.model_hint`, `controlvector.layer_count` and one F32 tensor
/// `direction.L` per layer, which llama.cpp adds to the output of block `L` (our hook point
/// `L`; llama.cpp has no `direction.0`, so layer 0 is left out). `layers` holds `(L, vector)`.
pub fn control_vector_gguf(model_hint: &str, layers: &[(usize, Vec<f32>)]) -> Vec<u8> {
    const ALIGN: usize = 32;
    const STRING: u32 = 8;
    const INT32: u32 = 5;
    const F32: u32 = 0;
    let mut out = Vec::new();
    let put_str = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    let layers: Vec<&(usize, Vec<f32>)> = layers.iter().filter(|(l, _)| *l > 0).collect();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(layers.len() as u64).to_le_bytes());
    out.extend_from_slice(&3u64.to_le_bytes());
    put_str(&mut out, "general.architecture");
    out.extend_from_slice(&STRING.to_le_bytes());
    put_str(&mut out, "controlvector");
    put_str(&mut out, "controlvector.model_hint");
    out.extend_from_slice(&STRING.to_le_bytes());
    put_str(&mut out, model_hint);
    put_str(&mut out, "controlvector.layer_count");
    out.extend_from_slice(&INT32.to_le_bytes());
    out.extend_from_slice(&(layers.len() as i32).to_le_bytes());
    let mut offset = 0usize;
    for (l, v) in &layers {
        put_str(&mut out, &format!("direction.{l}"));
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(&F32.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + v.len() * 4).next_multiple_of(ALIGN);
    }
    out.resize(out.len().next_multiple_of(ALIGN), 0);
    for (_, v) in &layers {
        v.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        out.resize(out.len().next_multiple_of(ALIGN), 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_vector_reads_back_through_an_independent_gguf_reader() {
        use crate::engine::GgufFile;
        let layers: Vec<(usize, Vec<f32>)> = (0..4)
            .map(|l| (l, (0..64).map(|i| (l * 100 + i) as f32 * 0.5).collect()))
            .collect();
        let bytes = control_vector_gguf("llama", &layers);
        // candle's GGUF reader (behind GgufFile) parses the header and finds every tensor.
        let f = GgufFile::from_bytes(bytes).expect("a valid GGUF file");
        assert_eq!(f.get_str("general.architecture").unwrap(), "controlvector");
        assert_eq!(f.get_str("controlvector.model_hint").unwrap(), "llama");
        assert_eq!(f.get_u64("controlvector.layer_count").unwrap(), 3);
        assert!(
            f.tensor("direction.0").is_err(),
            "llama.cpp has no direction.0"
        );
        for (l, v) in &layers[1..] {
            let t = f.tensor(&format!("direction.{l}")).unwrap();
            assert_eq!(t.shape, [64]);
            let got: Vec<f32> = f
                .tensor_bytes(t)
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(&got, v);
        }
    }
}
