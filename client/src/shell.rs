//! `glaux shell`: an interactive SQL prompt, and the same engine for `-c`, `-f` and piped input.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use arrow::util::pretty::pretty_format_batches_with_schema;
use glaux_proto::format_bytes;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::client::{ClientError, GlauxClient, QueryOutput};
use crate::statements::split_statements;

#[derive(Clone, Debug, Default)]
pub struct ShellOptions {
    /// SQL to run instead of reading input (`-c`).
    pub command: Option<String>,
    /// A file of statements to run (`-f`).
    pub file: Option<PathBuf>,
    /// Where interactive history is kept; `None` keeps none.
    pub history: Option<PathBuf>,
}

pub struct Shell {
    client: GlauxClient,
    options: ShellOptions,
}

impl Shell {
    pub fn new(client: GlauxClient, options: ShellOptions) -> Self {
        Self { client, options }
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

    /// Runs every statement, stopping at the first error.
    async fn run_script(&mut self, text: &str) -> bool {
        let (mut statements, rest) = split_statements(text);
        if !rest.is_empty() {
            statements.push(rest);
        }
        for statement in statements {
            if !self.run_statement(&statement).await {
                return false;
            }
        }
        true
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
        let outcome = tokio::select! {
            output = self.client.collect(&info) => Some(output),
            _ = tokio::signal::ctrl_c() => None,
        };
        match outcome {
            Some(Ok(output)) => {
                print_output(&output, started.elapsed().as_secs_f64());
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

    async fn interactive(&mut self) -> rustyline::Result<()> {
        let mut editor = DefaultEditor::new()?;
        if let Some(history) = &self.options.history {
            // A missing history file is normal on first use.
            let _ = editor.load_history(history);
        }
        println!("Glaux shell. End statements with ';'. Ctrl-D exits.");
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() { "glaux> " } else { "   ... " };
            match editor.readline(prompt) {
                Ok(line) => {
                    if buffer.is_empty() && matches!(line.trim(), "quit" | "exit" | "\\q") {
                        break;
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
}

fn print_output(output: &QueryOutput, seconds: f64) {
    let mut out = std::io::stdout().lock();
    if let Some(schema) = &output.schema
        && !schema.fields().is_empty()
    {
        match pretty_format_batches_with_schema(schema.clone(), &output.batches) {
            Ok(table) => {
                let _ = writeln!(out, "{table}");
            }
            Err(e) => {
                let _ = writeln!(out, "(cannot display the result: {e})");
            }
        }
    }
    let rows = output.rows();
    let scanned = output.stats.as_ref().map_or(0, |s| s.scan.bytes_scanned);
    // Partitioned tables also say how many partitions the query read of how many there are.
    let partitions = match &output.stats {
        Some(s) if s.partitions_total > 0 => format!(" ({} of {} partitions)", s.partitions_read, s.partitions_total),
        _ => String::new(),
    };
    let reruns = match output.stats.as_ref().map_or(0, |s| s.tasks_rerun) {
        0 => String::new(),
        1 => ", 1 task re-run after losing its executor".to_string(),
        n => format!(", {n} tasks re-run after losing their executors"),
    };
    let _ = writeln!(
        out,
        "{rows} row{} in set. Run time: {seconds:.2} s, Data scanned: {}{partitions}{reruns}",
        if rows == 1 { "" } else { "s" },
        format_bytes(scanned)
    );
}

fn print_error(error: &ClientError) {
    eprintln!("Error: {error}");
}
