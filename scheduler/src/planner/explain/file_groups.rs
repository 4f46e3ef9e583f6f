//! `EXPLAIN` without `VERBOSE` summarizes each scan's file groups (`files: 33 (3.10 MB) in 4
//! groups`) instead of listing every path, which on a real table buries the plan.

use std::fmt::{Display, Formatter};
use std::sync::Arc;

use datafusion::datasource::physical_plan::FileGroup;
use datafusion::physical_plan::ExecutionPlan;
use glaux_proto::format_bytes;

use crate::planner::scan_files::scan_files;

/// `text` (the verbose rendering of `plan`) with each scan's file listing replaced by its summary.
pub(super) fn summarized(plan: &Arc<dyn ExecutionPlan>, mut text: String, verbose: bool) -> String {
    if verbose {
        return text;
    }
    for config in scan_files(plan).unwrap_or_default() {
        let groups = &config.file_groups;
        let listing = format!("file_groups={}", Listing(groups));
        let files: usize = groups.iter().map(FileGroup::len).sum();
        // A file cut into byte ranges counts each range's bytes, not the whole file per range.
        let bytes: u64 = groups
            .iter()
            .flat_map(|g| g.iter())
            .map(|f| f.range.as_ref().map_or(f.object_meta.size, |r| r.end.saturating_sub(r.start) as u64))
            .sum();
        text = text.replacen(&listing, &summary(files, Some(bytes), groups.len()), 1);
    }
    text
}

/// `{2 groups: [[a, b:0..10], [c]]}` as `DataSourceExec` writes it when verbose.
struct Listing<'a>(&'a [FileGroup]);

impl Display for Listing<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        write!(f, "{{{n} {}: [", if n == 1 { "group" } else { "groups" })?;
        for (i, group) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "[")?;
            for (j, file) in group.iter().enumerate() {
                write!(f, "{}{}", if j > 0 { ", " } else { "" }, file.object_meta.location.as_ref())?;
                if let Some(range) = &file.range {
                    write!(f, ":{}..{}", range.start, range.end)?;
                }
            }
            write!(f, "]")?;
        }
        write!(f, "]}}")
    }
}

/// `files: 33 (3.10 MB) in 4 groups`, or without the size when it is not known.
fn summary(files: usize, bytes: Option<u64>, groups: usize) -> String {
    let size = bytes.map(|b| format!(" ({})", format_bytes(b))).unwrap_or_default();
    format!("files: {files}{size} in {groups} group{}", if groups == 1 { "" } else { "s" })
}

/// The same for a plan known only as text (an executor's report of its task): the listing
/// `file_groups={G groups: [[...], ...]}` becomes `files: F in G groups`. Paths are counted by the
/// commas between them at the listing's second bracket level; a listing that does not parse so
/// (a path with brackets, say) is left as it is.
pub(super) fn summarized_text(text: &str) -> String {
    const START: &str = "file_groups={";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(START) {
        out.push_str(&rest[..at]);
        let listing = &rest[at..];
        match parse_listing(&listing[START.len()..]) {
            Some((files, groups, len)) => {
                out.push_str(&summary(files, None, groups));
                rest = &listing[START.len() + len..];
            }
            None => {
                out.push_str(START);
                rest = &listing[START.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// From just after `file_groups={`: (files, groups, bytes up to and including the closing `}`).
fn parse_listing(listing: &str) -> Option<(usize, usize, usize)> {
    let body = listing.find(": [")? + 2;
    let (mut depth, mut files, mut groups, mut in_group) = (0usize, 0usize, 0usize, false);
    for (i, c) in listing[body..].char_indices() {
        match c {
            '[' => {
                depth += 1;
                if depth == 2 {
                    groups += 1;
                    in_group = false;
                }
            }
            ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return listing[body + i + 1..].starts_with('}').then_some((files, groups, body + i + 2));
                }
            }
            ',' if depth == 2 => in_group = false,
            ' ' => {}
            _ if depth == 2 && !in_group => {
                in_group = true;
                files += 1;
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::summarized_text;

    #[test]
    fn a_reported_listing_becomes_a_count() {
        let plan = "DataSourceExec: file_groups={2 groups: [[/w/a.parquet, /w/b.parquet:0..10], [/w/c.parquet]]}, \
                    projection=[x], file_type=parquet";
        assert_eq!(summarized_text(plan), "DataSourceExec: files: 3 in 2 groups, projection=[x], file_type=parquet");
        let one = "DataSourceExec: file_groups={1 group: [[/w/a.parquet]]}, projection=[x]";
        assert_eq!(summarized_text(one), "DataSourceExec: files: 1 in 1 group, projection=[x]");
    }

    #[test]
    fn a_listing_that_does_not_parse_stays() {
        let broken = "DataSourceExec: file_groups={1 group: [[/w/a]b.parquet]]}";
        assert_eq!(summarized_text(broken), broken);
        let cut = "DataSourceExec: file_groups={1 group: [[/w/a.parquet";
        assert_eq!(summarized_text(cut), cut);
    }
}
