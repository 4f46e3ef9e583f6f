//! Splitting SQL text into statements.

/// Splits at `;` outside quotes and comments. Empty statements are dropped; the `;` is not kept.
/// The second value is the unterminated rest (text after the last `;`), without leading white
/// space but with its trailing line break: the next line read is appended to it, and `FROM t`
/// then `JOIN u` must not become `tJOIN u`.
pub fn split_statements(text: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut quote: Option<char> = None;
    let mut line_comment = false;
    let mut block_comment = false;
    while let Some(c) = chars.next() {
        if line_comment {
            line_comment = c != '\n';
            current.push(c);
            continue;
        }
        if block_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                current.push(c);
                current.extend(chars.next());
                block_comment = false;
            } else {
                current.push(c);
            }
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '-') if chars.peek() == Some(&'-') => line_comment = true,
            (None, '/') if chars.peek() == Some(&'*') => block_comment = true,
            (None, ';') => {
                if has_code(&current) {
                    statements.push(current.trim().to_string());
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    let rest = if has_code(&current) { current.trim_start().to_string() } else { String::new() };
    (statements, rest)
}

/// True if `text` holds anything but white space and comments.
fn has_code(text: &str) -> bool {
    text.lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .any(|line| !line.trim().is_empty() && !line.trim().starts_with("/*"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let (statements, rest) = split_statements("SELECT ';' AS a; -- x; y\nSELECT \"a;b\" FROM t /* ; */;\nSELECT 3");
        assert_eq!(statements, vec!["SELECT ';' AS a", "-- x; y\nSELECT \"a;b\" FROM t /* ; */"]);
        assert_eq!(rest, "SELECT 3");
        let (statements, rest) = split_statements("  ;  -- only a comment\n");
        assert!(statements.is_empty());
        assert!(rest.is_empty());
    }

    #[test]
    fn a_statement_over_several_lines_keeps_its_line_breaks() {
        // As the shell feeds a script: line by line, each time with what was left over.
        let mut buffer = String::new();
        let mut statements = Vec::new();
        for line in "SELECT 1; SELECT a\nFROM t\nJOIN u ON a = b;".lines() {
            buffer.push_str(line);
            buffer.push('\n');
            let (done, rest) = split_statements(&buffer);
            statements.extend(done);
            buffer = rest;
        }
        assert_eq!(statements, vec!["SELECT 1", "SELECT a\nFROM t\nJOIN u ON a = b"]);
    }
}
