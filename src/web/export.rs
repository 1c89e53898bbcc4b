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
