//! Downloads: the conversation with its projections (JSON, whose `conversation` list is the
//! reference implementation's transcript format) and the drift chart's data (CSV).

use serde::Serialize;

use super::protocol::{Branch, BundleView, ModelView, TurnPointView, TurnSettings};

/// One user turn and its replies as the page holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportTurn {
    pub user: String,
    /// `(branch, reply text, its point)`; the capped reply only where capping was on.
    pub replies: Vec<(Branch, String, Option<TurnPointView>)>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct TurnRecord<'a> {
    turn: usize,
    branch: &'a str,
    projection: Option<f32>,
    pcs: Option<&'a [f32]>,
    read_back: Option<bool>,
    tokens: Option<Vec<(&'a str, f32)>>,
}

/// The whole conversation: `conversation` (default branch, reference format), `capped_conversation`
/// when there is one, the settings, the model and bundle, and per reply its projections.
pub fn conversation_json(
    model: Option<&ModelView>,
    bundle: Option<&BundleView>,
    settings: &TurnSettings,
    turns: &[ExportTurn],
) -> String {
    let branch_messages = |b: Branch| -> Vec<Message<'_>> {
        let mut out = Vec::new();
        if !settings.system.is_empty() {
            out.push(Message {
                role: "system",
                content: &settings.system,
            });
        }
        for t in turns {
            if let Some((_, text, _)) = t.replies.iter().find(|r| r.0 == b) {
                out.push(Message {
                    role: "user",
                    content: &t.user,
                });
                out.push(Message {
                    role: "assistant",
                    content: text,
                });
            }
        }
        out
    };
    let has_capped = turns
        .iter()
        .any(|t| t.replies.iter().any(|r| r.0 == Branch::Capped));
    let records: Vec<TurnRecord<'_>> = turns
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            t.replies.iter().map(move |(b, _, p)| TurnRecord {
                turn: i + 1,
                branch: b.name(),
                projection: p.as_ref().map(|p| p.projection),
                pcs: p.as_ref().map(|p| p.pcs.as_slice()),
                read_back: p.as_ref().map(|p| p.read_back),
                tokens: p.as_ref().map(|p| {
                    p.tokens
                        .iter()
                        .map(|t| (t.text.as_str(), t.projection))
                        .collect()
                }),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "format": "axiscope-conversation",
        "version": 1,
        "model": model,
        "bundle": bundle.map(|b| serde_json::json!({
            "model_name": b.model_name,
            "model_sha256": b.model_sha256,
            "analysis_layer": b.analysis_layer,
            "default_projection": b.default_projection,
            "default_band": b.default_band,
        })),
        "settings": settings,
        "conversation": branch_messages(Branch::Default),
        "capped_conversation": has_capped.then(|| branch_messages(Branch::Capped)),
        "projections": records,
    });
    serde_json::to_string_pretty(&doc).expect("json values serialise")
}

/// One row per reply: turn, branch, projection, PC1, PC2, tokens, read back, reply text.
pub fn drift_csv(turns: &[ExportTurn]) -> String {
    let mut out = String::from("turn,branch,projection,pc1,pc2,tokens,read_back,reply\n");
    for (i, t) in turns.iter().enumerate() {
        for (b, text, p) in &t.replies {
            let num = |v: Option<f32>| v.map(|v| v.to_string()).unwrap_or_default();
            let cells = [
                (i + 1).to_string(),
                b.name().to_string(),
                num(p.as_ref().map(|p| p.projection)),
                num(p.as_ref().and_then(|p| p.pcs.first().copied())),
                num(p.as_ref().and_then(|p| p.pcs.get(1).copied())),
                p.as_ref()
                    .map(|p| p.tokens.len().to_string())
                    .unwrap_or_default(),
                p.as_ref()
                    .map(|p| p.read_back.to_string())
                    .unwrap_or_default(),
                csv_text(text),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
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

/// A text cell: quoted, quotes doubled, and a leading `= + - @` defused so a spreadsheet
/// does not run model output as a formula.
fn csv_text(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::protocol::{GenSettings, TokenPoint};

    fn turns() -> Vec<ExportTurn> {
        let point = |p: f32| TurnPointView {
            projection: p,
            pcs: vec![p, -p],
            tokens: vec![TokenPoint {
                text: "Hi".into(),
                projection: p,
            }],
            read_back: false,
        };
        vec![
            ExportTurn {
                user: "Hello".into(),
                replies: vec![(Branch::Default, "Hi, \"friend\"".into(), Some(point(1.5)))],
            },
            ExportTurn {
                user: "More".into(),
                replies: vec![
                    (Branch::Default, "=SUM(A1)".into(), Some(point(-0.5))),
                    (Branch::Capped, "ok".into(), None),
                ],
            },
        ]
    }

    #[test]
    fn csv_has_one_row_per_reply_and_safe_text() {
        let csv = drift_csv(&turns());
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[1],
            r#"1,default,1.5,1.5,-1.5,1,false,"Hi, ""friend""""#
        );
        assert_eq!(lines[2], r#"2,default,-0.5,-0.5,0.5,1,false,"'=SUM(A1)""#);
        assert_eq!(lines[3], r#"2,capped,,,,,,"ok""#);
    }

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

    #[test]
    fn json_keeps_the_reference_transcript_format() {
        let settings = TurnSettings {
            system: "Be brief.".into(),
            sampling: GenSettings::default(),
            cap: None,
            steer: 0.0,
        };
        let v: serde_json::Value =
            serde_json::from_str(&conversation_json(None, None, &settings, &turns())).unwrap();
        let conv = v["conversation"].as_array().unwrap();
        assert_eq!(conv.len(), 5);
        assert_eq!(conv[0]["role"], "system");
        assert_eq!(conv[4]["content"], "=SUM(A1)");
        assert_eq!(v["capped_conversation"].as_array().unwrap().len(), 3);
        assert_eq!(v["projections"].as_array().unwrap().len(), 3);
        assert_eq!(v["projections"][0]["projection"], 1.5);
    }
}
