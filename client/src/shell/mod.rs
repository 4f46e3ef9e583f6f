//! `glaux shell`: an interactive SQL prompt, and the same engine for `-c`, `-f` and piped input.
//!
//! Statements end with `;` and may span lines. A line starting with `\` is a meta command (`\?`
//! lists them): describing tables, timing, output to a file, output formats. Interactive sessions
//! complete keywords, tables and columns with Tab (`completion`) and keep a history file. Results
//! print as aligned tables, CSV, TSV, JSON lines or vertical records (`output`), followed by
//! `N rows in set. Run time: ..., Data scanned: ...`. Ctrl-C while a statement runs cancels it on
//! every executor, not the shell.

mod completion;
mod output;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use glaux_proto::{QueryProgress, format_bytes};
use rustyline::Editor;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;

pub use output::{OutputFormat, write_result};

use crate::client::{ClientError, GlauxClient, QueryOutput};
use crate::statements::split_statements;
use completion::{CatalogWords, ShellHelper};

#[derive(Clone, Debug, Default)]
pub struct ShellOptions {
    /// SQL to run instead of reading input (`-c`).
    pub command: Option<String>,
    /// A file of statements to run (`-f`).
    pub file: Option<PathBuf>,
    /// Where interactive history is kept; `None` keeps none.
    pub history: Option<PathBuf>,
    /// How results print.
    pub format: OutputFormat,
}

pub struct Shell {
    client: GlauxClient,
    options: ShellOptions,
    /// Print run time and data scanned after each statement (`\timing` toggles).
    timing: bool,
    /// Where results go (`\o FILE`); `None` is standard output.
    output: Option<(PathBuf, std::fs::File)>,
    catalog: CatalogWords,
}

const HELP: &str = "\
Statements end with ';' and may span lines. Meta commands (one line each):
  \\?                 this help
  \\d [TABLE]         list tables, or describe TABLE's columns
  \\dt [PATTERN]      list tables (PATTERN as in SHOW TABLES LIKE, e.g. 'sales*')
  \\timing            toggle printing run time and data scanned
  \\o [FILE]          send results to FILE; without FILE, back to the terminal
  \\format [NAME]     show or set the output format: aligned, csv, tsv, json, vertical
  \\x                 toggle vertical output (one record per block)
  \\q                 quit (also: quit, exit, Ctrl-D)
Ctrl-C cancels the running statement.";

/// What a meta command asks the shell to do next.
enum Next {
    Continue,
    Quit,
}

impl Shell {
    pub fn new(client: GlauxClient, options: ShellOptions) -> Self {
        Self { client, options, timing: true, output: None, catalog: CatalogWords::default() }
    }

    /// Runs the shell. Returns false if a non-interactive run hit an error (exit status 1).
    pub async fn run(mut self) -> std::io::Result<bool> {
        if let Some(command) = self.options.command.clone() {
            return Ok(self.run_script(&command).await);
        }
        if let Some(file) = self.options.file.clone() {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", file.display())))?;
            return Ok(self.run_script(&text).await);
        }
        if !std::io::stdin().is_terminal() {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            return Ok(self.run_script(&text).await);
        }
        self.interactive().await.map_err(std::io::Error::other)?;
        Ok(true)
    }

    /// Runs every statement and meta command, stopping at the first error.
    async fn run_script(&mut self, text: &str) -> bool {
        let mut buffer = String::new();
        for line in text.lines() {
            if buffer.trim().is_empty() && line.trim_start().starts_with('\\') {
                match self.meta_command(line.trim()).await {
                    Ok(Next::Continue) => continue,
                    Ok(Next::Quit) => return true,
                    Err(message) => {
                        eprintln!("Error: {message}");
                        return false;
                    }
                }
            }
            buffer.push_str(line);
            buffer.push('\n');
            let (statements, rest) = split_statements(&buffer);
            buffer = rest;
            for statement in statements {
                if !self.run_statement(&statement).await {
                    return false;
                }
            }
        }
        let rest = buffer.trim();
        rest.is_empty() || self.run_statement(rest).await
    }

    /// Prints the result or the error; returns whether the statement succeeded. Ctrl-C while it
    /// runs cancels the statement (on every executor), not the shell.
    async fn run_statement(&mut self, sql: &str) -> bool {
        let started = Instant::now();
        let info = match self.client.submit(sql).await {
            Ok(info) => info,
            Err(error) => {
                print_error(&error);
                return false;
            }
        };
        // On a terminal, a progress line (on stderr) while a statement runs over a second.
        let show_progress = std::io::stderr().is_terminal() && self.output.is_none();
        let mut poller = self.client.clone();
        let mut drawn = false;
        let outcome = {
            let collect = self.client.collect(&info);
            tokio::pin!(collect);
            let interrupted = tokio::signal::ctrl_c();
            tokio::pin!(interrupted);
            let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
            loop {
                tokio::select! {
                    output = &mut collect => break Some(output),
                    _ = &mut interrupted => break None,
                    _ = ticks.tick(), if show_progress => {
                        if started.elapsed() < PROGRESS_AFTER {
                            continue;
                        }
                        let poll = tokio::time::timeout(PROGRESS_TIMEOUT, poller.progress(&info));
                        if let Ok(Ok(Some(progress))) = poll.await {
                            eprint!("\r\x1b[2K{}", progress_line(&progress));
                            drawn = true;
                        }
                    }
                }
            }
        };
        if drawn {
            // The line disappears once the statement is done.
            eprint!("\r\x1b[2K");
        }
        match outcome {
            Some(Ok(output)) => {
                if let Err(e) = self.print_output(&output, started.elapsed().as_secs_f64()) {
                    eprintln!("Error: {e}");
                    return false;
                }
                if changes_catalog(sql) {
                    self.load_catalog().await;
                }
                true
            }
            Some(Err(error)) => {
                print_error(&error);
                false
            }
            None => {
                // Reading has stopped, which alone ends the query; cancelling says so at once.
                let _ = self.client.cancel(info).await;
                eprintln!("Query cancelled after {:.2} s.", started.elapsed().as_secs_f64());
                false
            }
        }
    }

    /// Runs a meta command line (`\d sales`).
    async fn meta_command(&mut self, line: &str) -> Result<Next, String> {
        let (command, argument) = match line.split_once(char::is_whitespace) {
            Some((command, argument)) => (command, argument.trim()),
            None => (line, ""),
        };
        let argument = argument.trim_end_matches(';').trim();
        match command {
            "\\?" | "\\h" | "\\help" => println!("{HELP}"),
            "\\q" | "\\quit" => return Ok(Next::Quit),
            "\\d" if !argument.is_empty() => self.sql_meta(&format!("DESCRIBE {argument}")).await?,
            "\\d" | "\\dt" if argument.is_empty() => self.sql_meta("SHOW TABLES").await?,
            "\\dt" => {
                self.sql_meta(&format!("SHOW TABLES LIKE '{}'", argument.trim_matches('\'').replace('\'', "''")))
                    .await?
            }
            "\\timing" => {
                self.timing = match argument {
                    "on" => true,
                    "off" => false,
                    "" => !self.timing,
                    other => return Err(format!("\\timing takes on or off, not {other}")),
                };
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            "\\o" | "\\out" => {
                if argument.is_empty() {
                    self.output = None;
                } else {
                    let path = PathBuf::from(argument);
                    let file = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                    self.output = Some((path, file));
                }
            }
            "\\format" | "\\pset" => {
                let name = argument.strip_prefix("format").map_or(argument, str::trim);
                if name.is_empty() {
                    println!("Output format is {}.", self.options.format.name());
                } else {
                    self.options.format = OutputFormat::parse(name)
                        .ok_or_else(|| format!("unknown format {name}; use one of {}", OutputFormat::NAMES))?;
                    println!("Output format is {}.", self.options.format.name());
                }
            }
            "\\x" => {
                self.options.format = match self.options.format {
                    OutputFormat::Vertical => OutputFormat::Aligned,
                    _ => OutputFormat::Vertical,
                };
                println!("Output format is {}.", self.options.format.name());
            }
            other => return Err(format!("unknown command {other}; \\? lists them")),
        }
        Ok(Next::Continue)
    }

    /// A meta command that is a SQL statement underneath.
    async fn sql_meta(&mut self, sql: &str) -> Result<(), String> {
        if self.run_statement(sql).await { Ok(()) } else { Err(format!("{sql} failed")) }
    }

    /// Reads table and column names for completion; a failure only means fewer completions.
    async fn load_catalog(&mut self) {
        let Ok(tables) = self.client.tables_with_columns().await else { return };
        let mut words = Vec::new();
        for (schema, table, columns) in tables {
            if schema == "information_schema" {
                continue;
            }
            words.push(format!("{schema}.{table}"));
            words.push(table);
            words.extend(columns);
        }
        self.catalog.replace(words);
    }

    async fn interactive(&mut self) -> rustyline::Result<()> {
        let mut editor: Editor<ShellHelper, DefaultHistory> = Editor::new()?;
        editor.set_helper(Some(ShellHelper { catalog: self.catalog.clone() }));
        self.load_catalog().await;
        if let Some(history) = &self.options.history {
            // A missing history file is normal on first use.
            let _ = editor.load_history(history);
        }
        println!("Glaux shell. End statements with ';'. \\? lists commands, Ctrl-D exits.");
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() { "glaux> " } else { "   ... " };
            match editor.readline(prompt) {
                Ok(line) => {
                    if buffer.is_empty() && matches!(line.trim(), "quit" | "exit") {
                        break;
                    }
                    if buffer.trim().is_empty() && line.trim_start().starts_with('\\') {
                        let _ = editor.add_history_entry(line.trim());
                        match self.meta_command(line.trim()).await {
                            Ok(Next::Continue) => continue,
                            Ok(Next::Quit) => break,
                            Err(message) => {
                                eprintln!("Error: {message}");
                                continue;
                            }
                        }
                    }
                    buffer.push_str(&line);
                    buffer.push('\n');
                    let (statements, rest) = split_statements(&buffer);
                    if statements.is_empty() {
                        if rest.is_empty() {
                            buffer.clear();
                        }
                        continue;
                    }
                    let _ = editor.add_history_entry(buffer.trim());
                    buffer = rest;
                    for statement in statements {
                        self.run_statement(&statement).await;
                    }
                }
                Err(ReadlineError::Interrupted) => buffer.clear(),
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(e),
            }
        }
        if let Some(history) = &self.options.history {
            let _ = editor.save_history(history);
        }
        Ok(())
    }

    fn print_output(&mut self, output: &QueryOutput, seconds: f64) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        let out: &mut dyn Write = match &mut self.output {
            Some((_, file)) => file,
            None => &mut stdout,
        };
        if let Some(schema) = &output.schema
            && !schema.fields().is_empty()
        {
            output::write_result(out, self.options.format, schema, &output.batches)?;
        }
        out.flush()?;
        drop(stdout);
        // The summary goes to the terminal: a file of CSV or JSON stays just that.
        let rows = output.rows();
        let mut summary = format!("{rows} row{} in set.", if rows == 1 { "" } else { "s" });
        if self.timing {
            let scanned = output.stats.as_ref().map_or(0, |s| s.scan.bytes_scanned);
            // Partitioned tables also say how many partitions the query read of how many there are.
            let partitions = match &output.stats {
                Some(s) if s.partitions_total > 0 => {
                    format!(" ({} of {} partitions)", s.partitions_read, s.partitions_total)
                }
                _ => String::new(),
            };
            summary += &format!(" Run time: {seconds:.2} s, Data scanned: {}{partitions}", format_bytes(scanned));
            summary += &match output.stats.as_ref().map_or(0, |s| s.tasks_rerun) {
                0 => String::new(),
                1 => ", 1 task re-run after losing its executor".to_string(),
                n => format!(", {n} tasks re-run after losing their executors"),
            };
        }
        if self.output.is_some() || !matches!(self.options.format, OutputFormat::Aligned | OutputFormat::Vertical) {
            // Machine-readable output on stdout stays clean: the summary goes to stderr.
            eprintln!("{summary}");
        } else {
            println!("{summary}");
        }
        Ok(())
    }
}

/// How often the progress line is redrawn, and after how long it first appears.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);
const PROGRESS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// A busy cluster may answer slowly; the line then just updates less often.
const PROGRESS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `[12.3 s] stages 3, tasks 5/12 done, 1,204,000 rows, 412.50 MB scanned`
fn progress_line(progress: &QueryProgress) -> String {
    format!(
        "[{:.1} s] {} stage{}, tasks {}/{} done, {} rows, {} scanned",
        progress.elapsed_ms as f64 / 1000.0,
        progress.stages,
        if progress.stages == 1 { "" } else { "s" },
        progress.tasks_done,
        progress.tasks,
        group_thousands(progress.task_rows.max(progress.rows)),
        format_bytes(progress.bytes_scanned)
    )
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

/// Statements after which the catalog words for completion are read again.
fn changes_catalog(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    matches!(first.as_str(), "CREATE" | "DROP" | "ALTER" | "MSCK" | "USE")
}

fn print_error(error: &ClientError) {
    eprintln!("Error: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_reads_like_a_sentence() {
        let progress = QueryProgress {
            stages: 3,
            tasks: 12,
            tasks_done: 5,
            task_rows: 1_204_000,
            rows: 0,
            bytes_scanned: 412_500_000,
            elapsed_ms: 12_340,
        };
        assert_eq!(progress_line(&progress), "[12.3 s] 3 stages, tasks 5/12 done, 1,204,000 rows, 412.50 MB scanned");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
    }
}
