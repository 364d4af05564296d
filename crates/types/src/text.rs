//! Showing text that someone else wrote. Failure messages and statuses written by task code,
//! log lines sent by engines, names and reasons sent by other parties may hold terminal escape
//! sequences (which recolour or rewrite a terminal, or hide what follows), carriage returns and
//! newlines (which forge lines of a log) and bidirectional overrides (which make text read
//! differently than it is). Wherever such text is displayed, in the CLI or in a log, it goes
//! through [`Untrusted`], which shows every such character as an escape instead.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

/// Text from an untrusted party, displayed with its control characters escaped: `\n`, `\r`,
/// `\t`, `\\` for a backslash that could otherwise fake an escape, and `\u{..}` for every other
/// control or bidirectional formatting character. Printable text, other scripts and emoji are
/// shown as they are.
///
/// ```
/// use idlegrid_types::Untrusted;
/// assert_eq!(Untrusted("red \x1b[31mALERT\r\nok").to_string(), r"red \u{1b}[31mALERT\r\nok");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

/// Characters that change how the text around them is laid out or read, besides the control
/// characters: bidirectional embeddings, overrides and isolates, and invisible marks.
fn is_format_hazard(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || is_format_hazard(c)
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(needs_escape) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().expect("found a character at this index");
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                other => write!(f, "\\u{{{:x}}}", other as u32)?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// The text with its control characters escaped (see [`Untrusted`]); borrowed when nothing
/// needed escaping.
pub fn escape_untrusted(text: &str) -> Cow<'_, str> {
    if !text.contains(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    let _ = write!(escaped, "{}", Untrusted(text));
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_line_breaks_and_overrides_are_escaped() {
        let hostile = "ok\x1b]0;owned\x07 \x1b[2J\rfake line\nINFO forged \u{202e}txt.exe\u{9b}31m \\u{1b}";
        let shown = escape_untrusted(hostile);
        assert!(!shown.chars().any(|c| c.is_control() || is_format_hazard(c)), "{shown}");
        assert_eq!(shown, r"ok\u{1b}]0;owned\u{7} \u{1b}[2J\rfake line\nINFO forged \u{202e}txt.exe\u{9b}31m \\u{1b}");
    }

    #[test]
    fn ordinary_text_is_unchanged_and_not_copied() {
        for text in ["", "task 3 failed: trap at 0x1f", "Größe 温度 ✓ 🙂", "tab-free, quote \" ok"] {
            assert!(matches!(escape_untrusted(text), Cow::Borrowed(t) if t == text));
            assert_eq!(Untrusted(text).to_string(), text);
        }
    }

    #[test]
    fn every_control_character_is_escaped() {
        for code in (0u32..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(code).unwrap();
            let shown = Untrusted(&c.to_string()).to_string();
            assert!(shown.starts_with('\\') && !shown.chars().any(char::is_control), "{code:#x}: {shown:?}");
        }
    }
}
