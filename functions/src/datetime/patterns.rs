//! The date patterns Athena users write, as chrono `strftime` formats: MySQL's
//! (`date_format`, `date_parse`: `%Y-%m-%d %H:%i:%s`) and Joda-Time's (`format_datetime`,
//! `parse_datetime`, and table properties such as partition projection: `yyyy-MM-dd HH:mm`).

use datafusion::common::{Result, plan_err};

/// A MySQL `DATE_FORMAT` format as a chrono format.
pub fn mysql_to_strftime(format: &str) -> Result<String> {
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            push_literal(&mut out, c);
            continue;
        }
        let Some(specifier) = chars.next() else { return plan_err!("date format '{format}' ends with a lone %") };
        out.push_str(match specifier {
            'a' => "%a",
            'b' => "%b",
            'c' => "%-m",
            'd' => "%d",
            'e' => "%-d",
            'f' => "%6f",
            'H' => "%H",
            'h' | 'I' => "%I",
            'i' => "%M",
            'j' => "%j",
            'k' => "%-H",
            'l' => "%-I",
            'M' => "%B",
            'm' => "%m",
            'p' => "%p",
            'r' => "%I:%M:%S %p",
            'S' | 's' => "%S",
            'T' => "%H:%M:%S",
            'v' => "%V",
            'W' => "%A",
            'w' => "%w",
            'x' => "%G",
            'Y' => "%Y",
            'y' => "%y",
            '%' => "%%",
            other => return plan_err!("date format '{format}': %{other} is not supported"),
        });
    }
    Ok(out)
}

/// A Joda-Time / Java `DateTimeFormatter` pattern as a chrono format. Letters repeat to set the
/// width (`MM` zero-padded, `M` not, `MMM` a short name, `MMMM` a full one); text in single
/// quotes is literal, `''` is a quote.
pub fn joda_to_strftime(pattern: &str) -> Result<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            // A quoted literal, in which '' is a quote.
            let mut j = i + 1;
            loop {
                match (chars.get(j), chars.get(j + 1)) {
                    (Some('\''), Some('\'')) => {
                        out.push('\'');
                        j += 2;
                    }
                    (Some('\''), _) => break,
                    (Some(&l), _) => {
                        push_literal(&mut out, l);
                        j += 1;
                    }
                    (None, _) => return plan_err!("date pattern '{pattern}' has an unterminated quote"),
                }
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            push_literal(&mut out, c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&r| r == c).count();
        i += run;
        out.push_str(match (c, run) {
            ('y' | 'Y' | 'u', 2) => "%y",
            ('y' | 'Y' | 'u', _) => "%Y",
            ('x', 2) => "%g",
            ('x', _) => "%G",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', 1) => "%-d",
            ('d', _) => "%d",
            ('D', 1 | 2) => "%-j",
            ('D', _) => "%j",
            ('w', 1) => "%-V",
            ('w', _) => "%V",
            ('e', _) => "%u",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('a', _) => "%p",
            ('H', 1) => "%-H",
            ('H', _) => "%H",
            ('k', _) => "%-H",
            ('h', 1) => "%-I",
            ('h', _) => "%I",
            ('m', 1) => "%-M",
            ('m', _) => "%M",
            ('s', 1) => "%-S",
            ('s', _) => "%S",
            ('S', 1..=3) => "%3f",
            ('S', 4..=6) => "%6f",
            ('S', _) => "%9f",
            ('Z', 1) => "%z",
            ('Z', _) => "%:z",
            ('z', _) => "%Z",
            _ => return plan_err!("date pattern '{pattern}': the letter '{c}' is not supported"),
        });
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_formats() {
        assert_eq!(mysql_to_strftime("%Y-%m-%d %H:%i:%s").expect("format"), "%Y-%m-%d %H:%M:%S");
        assert_eq!(mysql_to_strftime("%c/%e %l %p %% %f").expect("format"), "%-m/%-d %-I %p %% %6f");
        assert!(mysql_to_strftime("%Q").is_err());
    }

    #[test]
    fn joda_patterns() {
        assert_eq!(joda_to_strftime("yyyy-MM-dd'T'HH:mm:ss.SSS").expect("pattern"), "%Y-%m-%dT%H:%M:%S.%3f");
        assert_eq!(joda_to_strftime("EEE, d MMM yyyy h:mm a").expect("pattern"), "%a, %-d %b %Y %-I:%M %p");
        assert_eq!(joda_to_strftime("yyyy/MM/dd/HH 'o''clock' 100%").expect("pattern"), "%Y/%m/%d/%H o'clock 100%%");
        assert!(joda_to_strftime("yyyy-qq").is_err());
        assert!(joda_to_strftime("'open").is_err());
    }
}
