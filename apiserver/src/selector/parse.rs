//! The recursive-descent parser behind [`LabelSelector::parse`](super::LabelSelector::parse).

use super::lex::{Kind, Token, tokenize};
use super::validate::{key_problem, value_problem};
use super::{Operator, Requirement, SelectorError};

/// A value as written, with where it was written for error messages.
type Spanned<'a> = (&'a str, usize);

pub(super) struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token<'a>>,
    next: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(input: &'a str) -> Self {
        Parser {
            input,
            tokens: tokenize(input),
            next: 0,
        }
    }

    pub(super) fn peek(&self) -> Token<'a> {
        self.tokens[self.next]
    }

    /// Returns the next token; stays on the final `End` token once reached.
    pub(super) fn advance(&mut self) -> Token<'a> {
        let token = self.peek();
        if token.kind != Kind::End {
            self.next += 1;
        }
        token
    }

    pub(super) fn syntax_error(&self, found: Token<'_>, expected: &'static str) -> SelectorError {
        SelectorError::Syntax {
            input: self.input.to_owned(),
            position: found.position,
            found: found.describe(),
            expected,
        }
    }

    pub(super) fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut token = self.advance();
        let negated = token.kind == Kind::Not;
        if negated {
            token = self.advance();
        }
        if !token.is_word() {
            return Err(self.syntax_error(token, "a label key"));
        }
        if let Some(reason) = key_problem(token.text) {
            return Err(SelectorError::InvalidKey {
                input: self.input.to_owned(),
                key: token.text.to_owned(),
                position: token.position,
                reason,
            });
        }
        let key = token.text.to_owned();
        // Whatever follows `!key` is left to the caller, which insists on ',' or the end.
        if negated || matches!(self.peek().kind, Kind::End | Kind::Comma) {
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: Vec::new(),
            });
        }

        let token = self.advance();
        let operator = match token.kind {
            Kind::Equals | Kind::DoubleEquals => Operator::Equals,
            Kind::NotEquals => Operator::NotEquals,
            Kind::In => Operator::In,
            Kind::NotIn => Operator::NotIn,
            Kind::GreaterThan => Operator::GreaterThan,
            Kind::LessThan => Operator::LessThan,
            _ => {
                return Err(
                    self.syntax_error(token, "one of '=', '==', '!=', 'in', 'notin', '>', '<'")
                );
            }
        };
        let spanned = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => vec![self.exact_value()?],
        };
        self.check_values(&key, &operator, &spanned)?;
        let mut values: Vec<String> = spanned.iter().map(|&(v, _)| v.to_owned()).collect();
        values.sort_unstable();
        values.dedup();
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The value after `=`, `!=`, `>` or `<`; nothing at all means the empty value.
    fn exact_value(&mut self) -> Result<Spanned<'a>, SelectorError> {
        let next = self.peek();
        if matches!(next.kind, Kind::End | Kind::Comma) {
            return Ok(("", next.position));
        }
        let token = self.advance();
        if token.is_word() {
            Ok((token.text, token.position))
        } else {
            Err(self.syntax_error(token, "a value"))
        }
    }

    fn value_set(&mut self) -> Result<Vec<Spanned<'a>>, SelectorError> {
        let open = self.advance();
        if open.kind != Kind::OpenParen {
            return Err(self.syntax_error(open, "'('"));
        }
        let first = self.peek();
        let values = if first.kind == Kind::CloseParen {
            // apimachinery reads `()` as the set holding just the empty value.
            vec![("", first.position)]
        } else if first.is_word() || first.kind == Kind::Comma {
            self.value_list()?
        } else {
            return Err(self.syntax_error(first, "a value, ',' or ')'"));
        };
        let close = self.advance();
        if close.kind != Kind::CloseParen {
            return Err(self.syntax_error(close, "')'"));
        }
        Ok(values)
    }

    /// A port of apimachinery's `parseIdentifiersList`, quirks included so
    /// that acceptance stays identical: an empty item stands for the empty
    /// value, yet `(,,)` and `(x,,)` are rejected while `(,,,)` is accepted,
    /// because a comma pair is consumed as a unit.
    fn value_list(&mut self) -> Result<Vec<Spanned<'a>>, SelectorError> {
        let mut values = Vec::new();
        loop {
            let token = self.advance();
            if token.is_word() {
                values.push((token.text, token.position));
                let next = self.peek();
                match next.kind {
                    Kind::Comma => {}
                    Kind::CloseParen => return Ok(values),
                    _ => return Err(self.syntax_error(next, "',' or ')'")),
                }
            } else if token.kind == Kind::Comma {
                if values.is_empty() {
                    values.push(("", token.position));
                }
                let next = self.peek();
                if next.kind == Kind::CloseParen {
                    values.push(("", next.position));
                    return Ok(values);
                }
                if next.kind == Kind::Comma {
                    self.advance();
                    values.push(("", next.position));
                }
            } else {
                return Err(self.syntax_error(token, "a value or ','"));
            }
        }
    }

    fn check_values(
        &self,
        key: &str,
        operator: &Operator,
        values: &[Spanned<'_>],
    ) -> Result<(), SelectorError> {
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for &(value, position) in values {
                if value.parse::<i64>().is_err() {
                    return Err(SelectorError::NotAnInteger {
                        input: self.input.to_owned(),
                        value: value.to_owned(),
                        position,
                        operator: operator.clone(),
                    });
                }
            }
        }
        for &(value, position) in values {
            if let Some(reason) = value_problem(value) {
                return Err(SelectorError::InvalidValue {
                    input: self.input.to_owned(),
                    key: key.to_owned(),
                    value: value.to_owned(),
                    position,
                    reason,
                });
            }
        }
        Ok(())
    }
}
