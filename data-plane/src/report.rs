//! Log formatting for error chains: many layers (tonic, hyper-util) print only a vague
//! top-level message and keep the useful part in `source()`.

use std::error::Error;
use std::fmt;

/// Displays an error and its causes as `top: cause: root`, skipping a cause whose text
/// repeats the previous one.
pub(crate) struct Report<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if text != last {
                write!(f, ": {text}")?;
                last = text;
            }
            source = cause.source();
        }
        Ok(())
    }
}
