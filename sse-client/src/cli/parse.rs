//! `sse-client parse [FILE]`: run a recorded stream through sse-proto's parser.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use sse_proto::Parser;

use super::json::JsonLine;

/// Arguments of `sse-client parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// The recorded stream; standard input when absent or `-`.
    file: Option<PathBuf>,
    /// Longest accepted line in bytes.
    #[arg(long, default_value_t = sse_proto::Limits::DEFAULT_MAX_LINE_LENGTH)]
    max_line_length: usize,
    /// Largest accepted event data in bytes.
    #[arg(long, default_value_t = sse_proto::Limits::DEFAULT_MAX_EVENT_SIZE)]
    max_event_size: usize,
}

/// Reads the stream in chunks (never the whole file at once), prints one JSON line per item, and fails
/// on the first limit error with the parser's message.
pub fn run(args: ParseArgs) -> Result<ExitCode, String> {
    let (mut input, name): (Box<dyn Read>, String) = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            let file =
                File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            (Box::new(file), path.display().to_string())
        }
        _ => (Box::new(io::stdin().lock()), "standard input".to_owned()),
    };
    let mut parser = Parser::builder()
        .max_line_length(args.max_line_length)
        .max_event_size(args.max_event_size)
        .build();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut buf = vec![0u8; 64 * 1024];
    let write_err = |e: io::Error| format!("cannot write to standard output: {e}");
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read {name}: {e}")),
        };
        parser.feed(&buf[..n]);
        for item in parser.by_ref() {
            let item = item
                .map_err(|e| format!("{name}: {e} (here: --max-line-length / --max-event-size)"))?;
            if let Some(line) = JsonLine::item(&item) {
                serde_json::to_writer(&mut out, &line).map_err(|e| write_err(e.into()))?;
                out.write_all(b"\n").map_err(write_err)?;
            }
        }
    }
    parser.finish();
    out.flush().map_err(write_err)?;
    Ok(ExitCode::SUCCESS)
}
