//! Tokens of the requirement language, each with its byte span in the source. Hand-written:
//! the language is small, and a lexer that works on bytes with explicit bounds cannot panic.

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Token {
    Number(f64),
    Text(String),
    Ident(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    End,
}

impl Token {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Token::Number(n) => format!("number {n}"),
            Token::Text(_) => "a string".into(),
            Token::Ident(name) => format!("'{name}'"),
            Token::End => "the end of the expression".into(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Token::LParen => "(",
            Token::RParen => ")",
            Token::LBracket => "[",
            Token::RBracket => "]",
            Token::Comma => ",",
            Token::Dot => ".",
            Token::Plus => "+",
            Token::Minus => "-",
            Token::Star => "*",
            Token::Slash => "/",
            Token::Percent => "%",
            Token::Eq => "==",
            Token::Ne => "!=",
            Token::Lt => "<",
            Token::Le => "<=",
            Token::Gt => ">",
            Token::Ge => ">=",
            Token::AndAnd => "&&",
            Token::OrOr => "||",
            Token::Bang => "!",
            _ => "?",
        }
    }
}

/// A token and where it starts and ends (byte offsets).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub token: Token,
    pub start: usize,
    pub end: usize,
}

/// Split `source` into tokens, ending with `Token::End`.
pub(crate) fn tokenize(source: &str) -> Result<Vec<Spanned>, ParseError> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte.is_ascii_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        let token = if byte.is_ascii_digit() {
            let (number, end) = number(source, start)?;
            at = end;
            number
        } else if byte == b'"' || byte == b'\'' {
            let (text, end) = string(source, start)?;
            at = end;
            Token::Text(text)
        } else if byte.is_ascii_alphabetic() || byte == b'_' {
            let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
            at = end;
            Token::Ident(source[start..end].to_string())
        } else {
            let (token, length) = symbol(bytes, start).ok_or_else(|| {
                let shown = source[start..].chars().next().unwrap_or('?');
                ParseError::at(source, start, format!("unexpected character '{shown}'"))
            })?;
            at += length;
            token
        };
        tokens.push(Spanned { token, start, end: at });
    }
    tokens.push(Spanned { token: Token::End, start: bytes.len(), end: bytes.len() });
    Ok(tokens)
}

fn symbol(bytes: &[u8], at: usize) -> Option<(Token, usize)> {
    let next = bytes.get(at + 1).copied();
    let two = |token| Some((token, 2));
    match (bytes[at], next) {
        (b'=', Some(b'=')) => two(Token::Eq),
        (b'!', Some(b'=')) => two(Token::Ne),
        (b'<', Some(b'=')) => two(Token::Le),
        (b'>', Some(b'=')) => two(Token::Ge),
        (b'&', Some(b'&')) => two(Token::AndAnd),
        (b'|', Some(b'|')) => two(Token::OrOr),
        (b'<', _) => Some((Token::Lt, 1)),
        (b'>', _) => Some((Token::Gt, 1)),
        (b'!', _) => Some((Token::Bang, 1)),
        (b'(', _) => Some((Token::LParen, 1)),
        (b')', _) => Some((Token::RParen, 1)),
        (b'[', _) => Some((Token::LBracket, 1)),
        (b']', _) => Some((Token::RBracket, 1)),
        (b',', _) => Some((Token::Comma, 1)),
        (b'.', _) => Some((Token::Dot, 1)),
        (b'+', _) => Some((Token::Plus, 1)),
        (b'-', _) => Some((Token::Minus, 1)),
        (b'*', _) => Some((Token::Star, 1)),
        (b'/', _) => Some((Token::Slash, 1)),
        (b'%', _) => Some((Token::Percent, 1)),
        _ => None,
    }
}

/// Digits, an optional fraction and an optional exponent: `12`, `0.5`, `1e6`, `2.5E-3`.
fn number(source: &str, start: usize) -> Result<(Token, usize), ParseError> {
    let bytes = source.as_bytes();
    let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut end = start + digits(start);
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end += 1 + digits(end + 1);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exponent = end + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        let exponent_digits = digits(exponent);
        if exponent_digits == 0 {
            return Err(ParseError::at(source, end, "expected digits after the exponent 'e'".into()));
        }
        end = exponent + exponent_digits;
    }
    if bytes.get(end).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') {
        return Err(ParseError::at(
            source,
            end,
            "a number must not run into a name: add a space or an operator".into(),
        ));
    }
    let value: f64 =
        source[start..end].parse().map_err(|_| ParseError::at(source, start, "this number cannot be read".into()))?;
    if !value.is_finite() {
        return Err(ParseError::at(source, start, "this number is too large".into()));
    }
    Ok((Token::Number(value), end))
}

/// A string between matching quotes, with escapes `\\`, `\"`, `\'`, `\n` and `\t`.
fn string(source: &str, start: usize) -> Result<(String, usize), ParseError> {
    let quote = source.as_bytes()[start] as char;
    let mut text = String::new();
    let mut chars = source[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        let at = start + 1 + offset;
        match c {
            c if c == quote => return Ok((text, at + 1)),
            '\\' => match chars.next() {
                Some((_, '\\')) => text.push('\\'),
                Some((_, '"')) => text.push('"'),
                Some((_, '\'')) => text.push('\''),
                Some((_, 'n')) => text.push('\n'),
                Some((_, 't')) => text.push('\t'),
                _ => return Err(ParseError::at(source, at, "unknown escape: use \\\\, \\\", \\', \\n or \\t".into())),
            },
            '\n' => return Err(ParseError::at(source, at, "a string must end on the line it starts".into())),
            c => text.push(c),
        }
    }
    Err(ParseError::at(source, start, format!("this string has no closing {quote}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<Token> {
        tokenize(source).unwrap().into_iter().map(|s| s.token).collect()
    }

    #[test]
    fn reads_every_kind_of_token() {
        assert_eq!(
            kinds("other.mb >= 1.5e3 && !x || 'a\\'b' != \"c\""),
            vec![
                Token::Ident("other".into()),
                Token::Dot,
                Token::Ident("mb".into()),
                Token::Ge,
                Token::Number(1500.0),
                Token::AndAnd,
                Token::Bang,
                Token::Ident("x".into()),
                Token::OrOr,
                Token::Text("a'b".into()),
                Token::Ne,
                Token::Text("c".into()),
                Token::End,
            ]
        );
    }

    #[test]
    fn bad_tokens_point_at_their_column() {
        let error = tokenize("other.x == 'open").unwrap_err();
        assert_eq!(error.column, 12);
        let error = tokenize("1 # 2").unwrap_err();
        assert_eq!((error.column, error.message.as_str()), (3, "unexpected character '#'"));
        assert_eq!(tokenize("1e").unwrap_err().column, 2);
        assert_eq!(tokenize("12abc").unwrap_err().column, 3);
        assert!(tokenize("1e999").unwrap_err().message.contains("too large"));
        assert_eq!(tokenize("'é' é").unwrap_err().column, 5);
    }
}
