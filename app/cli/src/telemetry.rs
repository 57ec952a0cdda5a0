//! Logging setup for the binaries.

use crate::config::LogFormat;
use std::io::{self, IsTerminal, Write};
use tracing_subscriber::{fmt, EnvFilter};

/// Sends `tracing` output to stderr, filtered by `filter` (the syntax of `RUST_LOG`; the CLI
/// takes it from `--log`, `TRACKFLOW_LOG` or the config file), as text or one JSON object per
/// line. Off by default: the CLI reports every failure itself, in one line, and a log line for
/// the same failure would only repeat it. A filter that does not parse turns logging off
/// rather than failing the command.
///
/// Text written anywhere but a terminal has no colour codes, and every control character inside
/// a line (a newline or an escape sequence from a request's text, say) is written escaped, so a
/// client cannot forge a log line or smuggle terminal codes into a log file. JSON escapes them
/// itself.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("off"));
    let terminal = io::stderr().is_terminal();
    let builder = fmt().with_env_filter(filter).with_ansi(terminal && format == LogFormat::Text);
    // A second initialisation (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text if terminal => builder.with_writer(io::stderr).try_init(),
        LogFormat::Text => builder.with_writer(|| OneLine(io::stderr())).try_init(),
        LogFormat::Json => builder.with_writer(io::stderr).json().try_init(),
    };
}

/// A writer of whole log records (the formatter writes each record, newline included, at once)
/// that escapes every control character but the record's final newline.
struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        self.0.write_all(&escape_controls(record))?;
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `record` with its control characters written as `\n`, `\r`, `\t` or `\xNN`, except one final
/// newline.
fn escape_controls(record: &[u8]) -> Vec<u8> {
    let (body, end) = match record.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (record, &b""[..]),
    };
    let mut out = Vec::with_capacity(record.len());
    for &byte in body {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            byte if byte.is_ascii_control() => out.extend_from_slice(format!("\\x{byte:02x}").as_bytes()),
            byte => out.push(byte),
        }
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_inside_a_record_are_escaped() {
        let table: [(&[u8], &[u8]); 4] = [
            (b"plain line\n", b"plain line\n"),
            (b"a\nERROR forged\n", b"a\\nERROR forged\n"),
            (b"\x1b[31mred\x1b[0m\r\t\x07\n", b"\\x1b[31mred\\x1b[0m\\r\\t\\x07\n"),
            ("caf\u{e9} \u{2713}\n".as_bytes(), "caf\u{e9} \u{2713}\n".as_bytes()),
        ];
        for (record, expected) in table {
            assert_eq!(escape_controls(record), expected, "{}", String::from_utf8_lossy(record));
        }
    }
}
