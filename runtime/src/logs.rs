//! The CRI log format: one record per line,
//! `<RFC3339Nano time> <stream> <P|F> <content>`, where P marks a partial
//! line (split because it was too long) and F the full line's end.

use std::io::Write;

/// Longest line content before it is split into partial records.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Turns one stream's bytes into CRI log records.
pub struct LineWriter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineWriter {
    pub fn new(stream: Stream) -> LineWriter {
        LineWriter {
            stream,
            pending: Vec::new(),
        }
    }

    /// Writes the complete lines in `data` (and over-long partial ones) to
    /// `out`, keeping an unfinished line for later.
    pub fn write(&mut self, data: &[u8], out: &mut impl Write) -> std::io::Result<()> {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        loop {
            let rest = &self.pending[start..];
            match rest.iter().position(|b| *b == b'\n') {
                Some(end) if end <= MAX_LINE => {
                    record(out, self.stream, 'F', &rest[..end])?;
                    start += end + 1;
                }
                _ if rest.len() >= MAX_LINE => {
                    record(out, self.stream, 'P', &rest[..MAX_LINE])?;
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// At the end of the stream: an unfinished line is written as full.
    pub fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            record(out, self.stream, 'F', &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

fn record(out: &mut impl Write, stream: Stream, tag: char, content: &[u8]) -> std::io::Result<()> {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut line = Vec::with_capacity(content.len() + 48);
    line.extend_from_slice(format!("{time} {} {tag} ", stream.name()).as_bytes());
    line.extend_from_slice(content);
    line.push(b'\n');
    out.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(out: &[u8]) -> Vec<(String, String, String)> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let time = parts.next().unwrap_or_default();
                assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
                let stream = parts.next().unwrap_or_default().to_string();
                let tag = parts.next().unwrap_or_default().to_string();
                (stream, tag, parts.next().unwrap_or_default().to_string())
            })
            .collect()
    }

    #[test]
    fn lines_become_full_records_and_the_rest_waits() -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stdout);
        w.write(b"hello\nwor", &mut out)?;
        w.write(b"ld\n\nlast", &mut out)?;
        w.finish(&mut out)?;
        let expect = [
            ("stdout", "F", "hello"),
            ("stdout", "F", "world"),
            ("stdout", "F", ""),
            ("stdout", "F", "last"),
        ];
        let got = records(&out);
        assert_eq!(got.len(), expect.len());
        for ((s, t, c), (es, et, ec)) in got.iter().zip(expect) {
            assert_eq!((s.as_str(), t.as_str(), c.as_str()), (es, et, ec));
        }
        Ok(())
    }

    #[test]
    fn long_lines_are_split_into_partial_records() -> std::io::Result<()> {
        let mut out = Vec::new();
        let mut w = LineWriter::new(Stream::Stderr);
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.push(b'\n');
        w.write(&data, &mut out)?;
        let got = records(&out);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].0.as_str(), got[0].1.as_str(), got[0].2.len()),
            ("stderr", "P", MAX_LINE)
        );
        assert_eq!((got[1].1.as_str(), got[1].2.len()), ("F", 10));
        Ok(())
    }
}
