//! Trino's type syntax in casts, rewritten token by token into what the SQL parser reads:
//! `ARRAY(T)` is `ARRAY<T>`, `ROW(name T, ...)` is `STRUCT<name T, ...>`, `VARBINARY` is
//! `BYTEA`, at any depth (`ARRAY(ROW(x ARRAY(VARCHAR)))`). `MAP(K, V)` keeps its form (the
//! parser reads it; `types.rs` plans it) with its inner types rewritten.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

/// The statement with its cast target types in a form the parser reads; unchanged when it
/// has none to rewrite (or does not tokenize: the parser will say why).
pub fn rewrite(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    if !["ARRAY", "ROW", "VARBINARY", "MAP"].iter().any(|word| super::contains_word(&upper, word)) {
        return sql.to_string();
    }
    let Ok(mut tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else { return sql.to_string() };
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        if matches!(&tokens[i], Token::Word(w) if w.keyword == Keyword::AS)
            && let Some(start) = next_significant(&tokens, i + 1)
            && is_type_word(&tokens[start])
        {
            changed |= convert_type(&mut tokens, start).is_some();
            i = start + 1;
        } else {
            i += 1;
        }
    }
    if !changed {
        return sql.to_string();
    }
    tokens.iter().map(ToString::to_string).collect()
}

fn next_significant(tokens: &[Token], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&i| !matches!(tokens[i], Token::Whitespace(_)))
}

fn word_is(token: &Token, name: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(name))
}

fn is_type_word(token: &Token) -> bool {
    ["ARRAY", "ROW", "MAP", "VARBINARY"].iter().any(|name| word_is(token, name))
}

fn word(value: &str) -> Token {
    Token::Word(Word { value: value.to_string(), quote_style: None, keyword: Keyword::NoKeyword })
}

/// Rewrites the type that starts at `start`; returns the index after it, or `None` if nothing
/// there needed rewriting.
fn convert_type(tokens: &mut [Token], start: usize) -> Option<usize> {
    if word_is(&tokens[start], "VARBINARY") {
        tokens[start] = word("BYTEA");
        return Some(start + 1);
    }
    let (generic, renamed) = if word_is(&tokens[start], "ARRAY") {
        (true, "ARRAY")
    } else if word_is(&tokens[start], "ROW") {
        (true, "STRUCT")
    } else if word_is(&tokens[start], "MAP") {
        (false, "MAP")
    } else {
        return None;
    };
    let open = next_significant(tokens, start + 1)?;
    if tokens[open] != Token::LParen {
        return None;
    }
    // Find the matching parenthesis, rewriting nested types on the way.
    let mut depth = 0;
    let mut i = open;
    while i < tokens.len() {
        match &tokens[i] {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            token if i > open && is_type_word(token) => {
                let preceded_by_separator = (open..i)
                    .rev()
                    .find(|&j| !matches!(tokens[j], Token::Whitespace(_)))
                    .is_some_and(|j| matches!(tokens[j], Token::LParen | Token::Comma | Token::Word(_)));
                if preceded_by_separator && let Some(next) = convert_type(tokens, i) {
                    i = next;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    if i >= tokens.len() {
        return None;
    }
    tokens[start] = word(renamed);
    if generic {
        // `>>` closing nested types is read as two closings by the parser.
        tokens[open] = Token::Lt;
        tokens[i] = Token::Gt;
    }
    Some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trino_types_become_parser_types() {
        assert_eq!(rewrite("SELECT CAST(x AS ARRAY(BIGINT))"), "SELECT CAST(x AS ARRAY<BIGINT>)");
        assert_eq!(
            rewrite("SELECT TRY_CAST(x AS ARRAY(ROW(a VARCHAR, b ARRAY(VARBINARY)))) AS y"),
            "SELECT TRY_CAST(x AS ARRAY<STRUCT<a VARCHAR, b ARRAY<BYTEA>>>) AS y"
        );
        assert_eq!(rewrite("SELECT CAST(m AS MAP(VARCHAR, ARRAY(INT)))"), "SELECT CAST(m AS MAP(VARCHAR, ARRAY<INT>))");
        assert_eq!(rewrite("SELECT CAST(b AS varbinary)"), "SELECT CAST(b AS BYTEA)");
        // Values are not types.
        let untouched = "SELECT ARRAY[1, 2] AS arr, ROW(1, 2) AS r, map(ARRAY['a'], ARRAY[1]) AS m, 'AS ARRAY(x)'";
        assert_eq!(rewrite(untouched), untouched);
        // Types written next to punctuation or at the ends of the text are found.
        assert_eq!(rewrite("SELECT CAST(x AS\narray(int))"), "SELECT CAST(x AS\nARRAY<int>)");
        assert_eq!(rewrite("select cast(r as row(a int))"), "select cast(r as STRUCT<a int>)");
    }

    #[test]
    fn only_whole_words_make_a_statement_tokenized() {
        use super::super::contains_word;
        for (text, word) in [("CAST(X AS ROW(A INT))", "ROW"), ("ROW", "ROW"), ("(ARRAY<", "ARRAY"), ("X.MAP", "MAP")] {
            assert!(contains_word(text, word), "{word} in {text}");
        }
        for (text, word) in [("'BROWN'", "ROW"), ("ROWS", "ROW"), ("I_ROW_ID", "ROW"), ("BITMAP", "MAP"), ("", "ROW")] {
            assert!(!contains_word(text, word), "{word} in {text}");
        }
    }
}
