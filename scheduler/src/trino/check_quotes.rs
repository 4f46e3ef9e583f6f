//! Typographic quotes outside string literals: a query pasted from a document or a chat
//! (`WHERE category = ‘Watches’`) gets an error that points at the quote and says what to type.

const TYPOGRAPHIC: [char; 8] = ['‘', '’', '‚', '‛', '“', '”', '„', '‟'];

/// Fails at the first typographic quote outside string literals, quoted identifiers and comments.
pub fn check(sql: &str) -> Result<(), String> {
    #[derive(PartialEq)]
    enum State {
        Code,
        Text,
        Identifier,
        LineComment,
        BlockComment,
    }
    let mut state = State::Code;
    let (mut line, mut column) = (1, 0);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match state {
            State::Code => match c {
                '\'' => state = State::Text,
                '"' => state = State::Identifier,
                '-' if chars.peek() == Some(&'-') => state = State::LineComment,
                '/' if chars.peek() == Some(&'*') => state = State::BlockComment,
                c if TYPOGRAPHIC.contains(&c) => {
                    let use_instead = if matches!(c, '“' | '”' | '„' | '‟') {
                        "use ' (an ASCII apostrophe) around text, or \" around a name"
                    } else {
                        "use ' (an ASCII apostrophe) around text"
                    };
                    return Err(format!(
                        "line {line}:{column}: the typographic quote {c} is not SQL: {use_instead} (a text editor or chat \
                         may have replaced it)"
                    ));
                }
                _ => {}
            },
            // '' inside a literal is an escaped quote: leaving and re-entering the literal.
            State::Text if c == '\'' => state = State::Code,
            State::Identifier if c == '"' => state = State::Code,
            State::LineComment if c == '\n' => state = State::Code,
            State::BlockComment if c == '*' && chars.peek() == Some(&'/') => {
                chars.next();
                column += 1;
                state = State::Code;
            }
            _ => {}
        }
        if c == '\n' {
            line += 1;
            column = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_outside_literals_are_refused_with_their_place() {
        let error = check("SELECT *\nFROM sales WHERE item = ‘Watches’").unwrap_err().to_string();
        assert!(error.contains("line 2:25") && error.contains("typographic quote ‘"), "{error}");
        assert!(check("SELECT “x” FROM t").unwrap_err().to_string().contains("\" around a name"));
        assert!(check("SELECT 'it’s fine', \"col’s\" FROM t -- don’t\n/* “ok” */").is_ok());
        assert!(check("SELECT 'a''b' AS x").is_ok());
    }
}
