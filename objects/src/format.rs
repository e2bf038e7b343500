//! [`FileFormat`]: how records are laid out in files (JSON lines or CSV), with the
//! encoder sinks use and the line decoder sources use.
//!
//! ```text
//!  &[T] ──FileFormat::encode──▶ bytes of a part file (CSV header first when it starts)
//!  line ──LineDecoder::decode──▶ Option<T>   (None: blank line or CSV header)
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How records are laid out in files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileFormat {
    /// One JSON document per line (`.jsonl`).
    #[default]
    JsonLines,
    /// One CSV row per line (`.csv`), fields in the order of the type's fields.
    Csv {
        /// Whether a file starts with a header row naming the fields: read by name
        /// then, and written at the start of every part file by sinks.
        header: bool,
    },
}

impl FileFormat {
    /// The file name extension: `jsonl` or `csv`.
    pub fn extension(&self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Csv { .. } => "csv",
        }
    }

    /// Appends `records` to `part`, one line each. A CSV header row is written first
    /// when the format has one and `part` is empty (the start of a file).
    ///
    /// # Errors
    /// A record that cannot be represented (e.g. a map in CSV, a non-string map key in
    /// JSON), described with the expected type; `part` may then hold part of the batch.
    pub fn encode<T: Serialize>(
        &self,
        records: &[T],
        part: &mut Vec<u8>,
    ) -> std::result::Result<(), String> {
        match self {
            Self::JsonLines => {
                for record in records {
                    serde_json::to_writer(&mut *part, record).map_err(|e| {
                        format!("a {} is not representable as JSON: {e}", type_name::<T>())
                    })?;
                    part.push(b'\n');
                }
                Ok(())
            }
            Self::Csv { header } => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(*header && part.is_empty())
                    .from_writer(&mut *part);
                for record in records {
                    writer.serialize(record).map_err(|e| {
                        format!(
                            "a {} is not representable as a CSV row: {e}",
                            type_name::<T>()
                        )
                    })?;
                }
                writer
                    .flush()
                    .map_err(|e| format!("writing CSV rows to memory: {e}"))
            }
        }
    }

    /// Decodes every record of a whole file's contents. `object` names the file in
    /// errors.
    ///
    /// # Errors
    /// A line that is not a `T`: the message names `object`, the line number (from 1)
    /// and the expected type.
    pub fn decode_all<T: DeserializeOwned>(
        &self,
        object: &str,
        bytes: &[u8],
    ) -> std::result::Result<Vec<T>, String> {
        let mut decoder = LineDecoder::new(*self);
        let mut out = Vec::new();
        for (index, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if let Some(record) = decoder
                .decode(line)
                .map_err(|e| format!("{object} line {}: {e}", index + 1))?
            {
                out.push(record);
            }
        }
        Ok(out)
    }
}

/// The last segment of a type's name, for messages.
fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    // `(u64, u64)` or `alloc::string::String`: keep tuples whole, paths short.
    if full.starts_with('(') {
        full
    } else {
        full.rsplit("::").next().unwrap_or(full)
    }
}

/// Decodes the lines of one file in order: knows whether the CSV header was seen.
#[derive(Debug)]
pub struct LineDecoder {
    format: FileFormat,
    /// The CSV header, once read (for headed CSV).
    header: Option<csv::StringRecord>,
}

impl LineDecoder {
    /// A decoder at the start of a file of `format`.
    pub fn new(format: FileFormat) -> Self {
        Self {
            format,
            header: None,
        }
    }

    /// Whether the next non-blank line is a header rather than a record.
    pub fn wants_header(&self) -> bool {
        matches!(self.format, FileFormat::Csv { header: true }) && self.header.is_none()
    }

    /// Decodes one line (without its `\n`; a trailing `\r` is ignored): `None` for a
    /// blank line or the header.
    ///
    /// # Errors
    /// A line that is not a `T`, described with the expected type (the caller adds
    /// the file and the line number).
    pub fn decode<T: DeserializeOwned>(
        &mut self,
        line: &[u8],
    ) -> std::result::Result<Option<T>, String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        match self.format {
            FileFormat::JsonLines => serde_json::from_slice(line)
                .map(Some)
                .map_err(|e| format!("expected a JSON {}: {e}", type_name::<T>())),
            FileFormat::Csv { .. } => {
                let row = csv_row(line)?;
                if self.wants_header() {
                    self.header = Some(row);
                    return Ok(None);
                }
                row.deserialize(self.header.as_ref())
                    .map(Some)
                    .map_err(|e| format!("expected a CSV row of {}: {e}", type_name::<T>()))
            }
        }
    }
}

/// Parses one CSV line into its fields.
fn csv_row(line: &[u8]) -> std::result::Result<csv::StringRecord, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line);
    let mut row = csv::StringRecord::new();
    match reader.read_record(&mut row) {
        Ok(true) => Ok(row),
        Ok(false) => Ok(csv::StringRecord::new()),
        Err(e) => Err(format!("expected a CSV row: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        item: String,
    }

    #[test]
    fn formats_round_trip() {
        let orders = vec![
            Order {
                id: 1,
                item: "tea, green".into(),
            },
            Order {
                id: 2,
                item: "\"quoted\"".into(),
            },
        ];
        for format in [
            FileFormat::JsonLines,
            FileFormat::Csv { header: false },
            FileFormat::Csv { header: true },
        ] {
            let mut part = Vec::new();
            format.encode(&orders[..1], &mut part).unwrap();
            format.encode(&orders[1..], &mut part).unwrap();
            let decoded: Vec<Order> = format.decode_all("x", &part).unwrap();
            assert_eq!(decoded, orders, "{format:?}");
        }
        let mut part = Vec::new();
        FileFormat::Csv { header: true }
            .encode(&orders, &mut part)
            .unwrap();
        assert!(
            part.starts_with(b"id,item\n"),
            "{}",
            String::from_utf8_lossy(&part)
        );
    }

    #[test]
    fn a_malformed_line_names_the_object_the_line_and_the_type() {
        let err = FileFormat::JsonLines
            .decode_all::<(u64, u64)>("out/part-0.jsonl", b"[1,2]\n\n[3,\"x\"]\n")
            .unwrap_err();
        assert!(
            err.contains("out/part-0.jsonl line 3") && err.contains("expected a JSON (u64, u64)"),
            "{err}"
        );
        let err = FileFormat::Csv { header: false }
            .decode_all::<(u64, u64)>("a.csv", b"1,2\n3\n")
            .unwrap_err();
        assert!(
            err.contains("a.csv line 2") && err.contains("CSV row"),
            "{err}"
        );
    }
}
