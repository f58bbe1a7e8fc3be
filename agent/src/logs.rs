//! Container logs in the CRI format both runtimes write
//! (`<RFC3339Nano> <stdout|stderr> <P|F> <content>`): reading them back as
//! whole messages, with `kubectl logs`' options (tail, since, timestamps,
//! byte limit), and following a growing file.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use k8s_openapi::jiff::Timestamp;

/// One whole log message (partial lines joined).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The timestamp as written (RFC 3339 with nanoseconds).
    pub time: String,
    pub content: Vec<u8>,
}

impl Message {
    fn parsed_time(&self) -> Option<Timestamp> {
        self.time.parse().ok()
    }
}

/// What `kubectl logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

/// Reads a CRI log file incrementally into whole messages.
pub struct Reader {
    file: std::fs::File,
    /// Bytes after the last newline, not a whole line yet.
    unfinished: Vec<u8>,
    /// Partial (`P`) fragments of the current message.
    partial: Option<Message>,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Reader {
            file,
            unfinished: Vec::new(),
            partial: None,
        })
    }

    /// The whole messages written since the last call.
    pub fn read_new(&mut self) -> Result<Vec<Message>> {
        // A file truncated under us: start over from its start.
        if self.file.stream_position()? > self.file.metadata()?.len() {
            self.file.seek(SeekFrom::Start(0))?;
            self.unfinished.clear();
        }
        let mut bytes = std::mem::take(&mut self.unfinished);
        self.file.read_to_end(&mut bytes)?;
        let mut messages = Vec::new();
        let mut rest = bytes.as_slice();
        while let Some(newline) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(newline);
            rest = &tail[1..];
            let Some((time, partial, content)) = parse_line(line) else {
                continue;
            };
            let message = self.partial.get_or_insert_with(|| Message {
                time: time.to_string(),
                content: Vec::new(),
            });
            message.content.extend_from_slice(content);
            if !partial {
                message.content.push(b'\n');
                messages.extend(self.partial.take());
            }
        }
        self.unfinished = rest.to_vec();
        Ok(messages)
    }
}

/// `(timestamp, partial, content)` of a CRI log line.
fn parse_line(line: &[u8]) -> Option<(&str, bool, &[u8])> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let _stream = fields.next()?;
    let tag = fields.next()?;
    let content = fields.next().unwrap_or_default();
    let partial = tag.split(|b| *b == b':').any(|t| t == b"P");
    Some((time, partial, content))
}

/// The messages `options` select, rendered as `kubectl logs` prints them.
pub fn render(messages: &[Message], options: &Options) -> Vec<u8> {
    let selected: Vec<&Message> = messages
        .iter()
        .filter(|m| {
            options
                .since
                .is_none_or(|since| m.parsed_time().is_none_or(|t| t >= since))
        })
        .collect();
    let skip = options
        .tail_lines
        .map_or(0, |n| selected.len().saturating_sub(n));
    let mut out = Vec::new();
    for m in &selected[skip..] {
        append(&mut out, m, options.timestamps);
    }
    if let Some(limit) = options.limit_bytes {
        out.truncate(limit);
    }
    out
}

/// One message as printed.
pub fn append(out: &mut Vec<u8>, message: &Message, timestamps: bool) {
    if timestamps {
        out.extend_from_slice(message.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&message.content);
}

/// The last `lines` lines (at most `bytes` bytes) of a log, for
/// `terminationMessagePolicy: FallbackToLogsOnError`.
pub fn tail(path: &Path, lines: usize, bytes: usize) -> Result<String> {
    let messages = Reader::open(path)?.read_new()?;
    let out = render(
        &messages,
        &Options {
            tail_lines: Some(lines),
            ..Default::default()
        },
    );
    let start = out.len().saturating_sub(bytes);
    Ok(String::from_utf8_lossy(&out[start..]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &str) -> (std::path::PathBuf, std::fs::File) {
        let path = std::env::temp_dir().join(format!(
            "paddock-log-{}-{}",
            std::process::id(),
            content.len()
        ));
        let f = std::fs::File::create(&path).unwrap();
        let mut w = f.try_clone().unwrap();
        w.write_all(content.as_bytes()).unwrap();
        (path, f)
    }

    const LOG: &str = "2026-01-01T00:00:01.000000001Z stdout F first\n\
                       2026-01-01T00:00:02.000000001Z stderr P sec\n\
                       2026-01-01T00:00:02.100000001Z stderr F ond\n\
                       2026-01-01T00:00:03.000000001Z stdout F third\n";

    #[test]
    fn partial_lines_join_and_options_select() {
        let (path, _f) = file(LOG);
        let messages = Reader::open(&path).unwrap().read_new().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(
            render(&messages, &Options::default()),
            b"first\nsecond\nthird\n"
        );
        let tail = Options {
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            render(&messages, &tail),
            b"2026-01-01T00:00:03.000000001Z third\n"
        );
        let since = Options {
            since: Some("2026-01-01T00:00:02Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(render(&messages, &since), b"second\nthird\n");
        let limited = Options {
            limit_bytes: Some(3),
            ..Default::default()
        };
        assert_eq!(render(&messages, &limited), b"fir");
        assert_eq!(tail_of(&path), "third\n");
        std::fs::remove_file(path).unwrap();
    }

    fn tail_of(path: &Path) -> String {
        tail(path, 1, 100).unwrap()
    }

    #[test]
    fn reads_what_is_appended_line_by_line() {
        let (path, f) = file("2026-01-01T00:00:01Z stdout F a\n2026-01-01T00:00:02Z stdout F b");
        let mut reader = Reader::open(&path).unwrap();
        assert_eq!(reader.read_new().unwrap().len(), 1);
        let mut w = f;
        w.write_all(b"c\n").unwrap();
        let more = reader.read_new().unwrap();
        assert_eq!(more[0].content, b"bc\n");
        assert!(reader.read_new().unwrap().is_empty());
        std::fs::remove_file(path).unwrap();
    }
}
