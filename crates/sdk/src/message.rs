//! Conveniences on [`Message`], the WIT record `message`.

use crate::{ComponentError, Message};

impl Message {
    /// A message with `payload`, no content type and no headers.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        Self {
            payload: payload.into(),
            content_type: None,
            headers: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` message.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new(text.into()).with_content_type("text/plain; charset=utf-8")
    }

    /// This message with its content type set to `content_type`.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// This message with the header `name: value` appended (an existing
    /// header of the same name is kept).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header named `name`, compared
    /// case-insensitively (ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The payload as text, or [`ComponentError::InvalidInput`] when it is
    /// not UTF-8.
    pub fn payload_str(&self) -> Result<&str, ComponentError> {
        std::str::from_utf8(&self.payload).map_err(|err| {
            ComponentError::InvalidInput(format!("payload is not UTF-8 text: {err}"))
        })
    }
}
