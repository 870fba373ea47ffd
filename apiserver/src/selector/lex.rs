//! Splitting selector text into tokens.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Word,
    In,
    NotIn,
    OpenParen,
    CloseParen,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    End,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'a> {
    pub(super) kind: Kind,
    pub(super) text: &'a str,
    pub(super) position: usize,
}

impl Token<'_> {
    /// `in` and `notin` are keywords only where an operator is expected;
    /// apimachinery accepts them as plain keys and values everywhere else.
    pub(super) fn is_word(&self) -> bool {
        matches!(self.kind, Kind::Word | Kind::In | Kind::NotIn)
    }

    pub(super) fn starts_requirement(&self) -> bool {
        self.is_word() || self.kind == Kind::Not
    }

    pub(super) fn describe(&self) -> String {
        if self.kind == Kind::End {
            "end of string".to_owned()
        } else {
            format!("{:?}", self.text)
        }
    }
}

fn is_separator_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_symbol(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits like apimachinery's lexer: symbols take the longest match among
/// `=`, `==`, `!`, `!=`, `(`, `)`, `,`, `>`, `<`; any other run of
/// non-space bytes is a word, validated later. Splitting only at ASCII bytes
/// keeps every slice on a UTF-8 boundary.
pub(super) fn tokenize(input: &str) -> Vec<Token<'_>> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while bytes.get(pos).copied().is_some_and(is_separator_space) {
            pos += 1;
        }
        let Some(&byte) = bytes.get(pos) else {
            tokens.push(Token {
                kind: Kind::End,
                text: "",
                position: pos,
            });
            return tokens;
        };
        let start = pos;
        let kind = if is_symbol(byte) {
            let followed_by_equals = bytes.get(pos + 1) == Some(&b'=');
            pos += 1;
            match byte {
                b'=' | b'!' if followed_by_equals => {
                    pos += 1;
                    if byte == b'=' {
                        Kind::DoubleEquals
                    } else {
                        Kind::NotEquals
                    }
                }
                b'=' => Kind::Equals,
                b'!' => Kind::Not,
                b'(' => Kind::OpenParen,
                b')' => Kind::CloseParen,
                b',' => Kind::Comma,
                b'>' => Kind::GreaterThan,
                _ => Kind::LessThan,
            }
        } else {
            while bytes
                .get(pos)
                .is_some_and(|&b| !is_symbol(b) && !is_separator_space(b))
            {
                pos += 1;
            }
            match &input[start..pos] {
                "in" => Kind::In,
                "notin" => Kind::NotIn,
                _ => Kind::Word,
            }
        };
        tokens.push(Token {
            kind,
            text: &input[start..pos],
            position: start,
        });
    }
}
