//! Share links: the settings and the conversation in the URL's fragment (`#s=<base64url
//! JSON>`), so nothing is sent to any server. Restoring re-measures the replies with the
//! model instead of trusting numbers from a link. Decoding checks sizes and rejects unknown
//! fields: a link is input from a stranger.

use serde::{Deserialize, Serialize};

use super::protocol::{CapSettings, GenSettings, SharedTurn};

pub const VERSION: u32 = 1;
/// Fragments beyond this are refused before decoding (a long chat is ~20 KB).
const MAX_FRAGMENT: usize = 512 * 1024;
const MAX_TURNS: usize = 200;
const MAX_TEXT: usize = 32 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareState {
    pub v: u32,
    pub system: String,
    pub sampling: GenSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<CapSettings>,
    #[serde(default)]
    pub steer: f32,
    /// A model other than the default, by URL (files cannot be shared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_url: Option<String>,
    pub turns: Vec<SharedTurn>,
}

impl ShareState {
    /// The fragment, without the leading `#`.
    pub fn to_fragment(&self) -> String {
        format!(
            "s={}",
            base64url_encode(serde_json::to_string(self).expect("serialises").as_bytes())
        )
    }

    /// Parses a fragment (with or without `#`); `Ok(None)` when it holds no shared state.
    pub fn from_fragment(fragment: &str) -> Result<Option<Self>, String> {
        let f = fragment.strip_prefix('#').unwrap_or(fragment);
        let Some(data) = f.strip_prefix("s=") else {
            return Ok(None);
        };
        if data.len() > MAX_FRAGMENT {
            return Err(format!(
                "the shared link is too long ({} characters)",
                data.len()
            ));
        }
        let bytes = base64url_decode(data).ok_or("the shared link is damaged (not base64url)")?;
        let s: ShareState = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the shared link is damaged: {e}"))?;
        if s.v != VERSION {
            return Err(format!(
                "the shared link has version {}, this page reads {VERSION}",
                s.v
            ));
        }
        if s.turns.len() > MAX_TURNS {
            return Err(format!(
                "the shared link has {} turns, at most {MAX_TURNS} are read",
                s.turns.len()
            ));
        }
        let too_long = |t: &str| t.len() > MAX_TEXT;
        if too_long(&s.system)
            || s.turns.iter().any(|t| {
                too_long(&t.user)
                    || too_long(&t.assistant)
                    || t.capped.as_deref().is_some_and(too_long)
            })
        {
            return Err(format!(
                "the shared link has a message over {MAX_TEXT} bytes"
            ));
        }
        if !(s.steer.is_finite()
            && s.sampling.temperature.is_finite()
            && s.sampling.top_p.is_finite())
        {
            return Err("the shared link has a non-numeric setting".into());
        }
        Ok(Some(s))
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 section 5 (URL- and filename-safe alphabet), without padding.
pub fn base64url_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Inverse of [`base64url_encode`]; also accepts `=` padding. `None` for any other character
/// or an impossible length.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc_4648_vectors() {
        // RFC 4648 section 10, without padding; then the URL-safe characters.
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url_encode(plain.as_bytes()), coded);
            assert_eq!(base64url_decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(
            base64url_decode("Zm9v+"),
            None,
            "'+' is not in the URL-safe alphabet"
        );
        assert_eq!(base64url_decode("Z"), None);
    }

    fn state() -> ShareState {
        ShareState {
            v: VERSION,
            system: "You are a pirate. <b>arr</b>".into(),
            sampling: GenSettings {
                max_tokens: 12,
                ..GenSettings::default()
            },
            cap: Some(CapSettings {
                percentile: 75,
                start: 10,
                end: 20,
            }),
            steer: 0.5,
            model_url: None,
            turns: vec![SharedTurn {
                user: "Héllo 👋".into(),
                assistant: "Ahoy".into(),
                capped: Some("Hello".into()),
            }],
        }
    }

    #[test]
    fn state_round_trips_through_the_fragment() {
        let s = state();
        let f = s.to_fragment();
        assert!(
            f.starts_with("s=") && f[2..].bytes().all(|b| ALPHABET.contains(&b)),
            "{f}"
        );
        assert_eq!(
            ShareState::from_fragment(&format!("#{f}")).unwrap(),
            Some(s)
        );
        assert_eq!(ShareState::from_fragment("").unwrap(), None);
        assert_eq!(ShareState::from_fragment("#top").unwrap(), None);
    }

    #[test]
    fn hostile_fragments_are_refused() {
        assert!(ShareState::from_fragment("#s=!!!").is_err());
        let wrap = |json: &str| format!("s={}", base64url_encode(json.as_bytes()));
        let unknown = r#"{"v":1,"system":"","sampling":{},"turns":[],"evil":1}"#;
        assert!(
            ShareState::from_fragment(&wrap(unknown))
                .unwrap_err()
                .contains("evil")
        );
        let version = r#"{"v":9,"system":"","sampling":{},"turns":[]}"#;
        assert!(
            ShareState::from_fragment(&wrap(version))
                .unwrap_err()
                .contains("version 9")
        );
        let mut big = state();
        big.turns[0].user = "x".repeat(MAX_TEXT + 1);
        assert!(ShareState::from_fragment(&big.to_fragment()).is_err());
        assert!(ShareState::from_fragment(&format!("s={}", "A".repeat(MAX_FRAGMENT + 4))).is_err());
    }
}
