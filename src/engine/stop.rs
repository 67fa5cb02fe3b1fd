//! Stop strings in streamed text: what is shown never contains any part of a stop string, and
//! the shown chunks always add up to the reply's final text.

/// Holds back streamed text that might be the start of a stop string, so no part of a stop
/// string is ever shown, and the shown chunks always add up to the final text.
pub(super) struct StopMatcher<'s> {
    stops: Vec<&'s str>,
    held: String,
}

impl<'s> StopMatcher<'s> {
    pub(super) fn new(stops: &'s [String]) -> Self {
        Self { stops: stops.iter().map(String::as_str).filter(|s| !s.is_empty()).collect(), held: String::new() }
    }

    /// Returns the text safe to show and whether a stop string was found.
    pub(super) fn feed(&mut self, piece: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (piece.to_owned(), false);
        }
        self.held.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|stop| self.held.find(stop)).min() {
            let visible = self.held[..at].to_owned();
            self.held.clear();
            return (visible, true);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len()).rev().filter(|&n| stop.is_char_boundary(n)).find(|&n| self.held.ends_with(&stop[..n]))
            })
            .max()
            .unwrap_or(0);
        let split = self.held.len() - keep;
        let visible = self.held[..split].to_owned();
        self.held.drain(..split);
        (visible, false)
    }

    pub(super) fn finish(&mut self, stream: &mut super::tokenizer::TextStream<'_>) -> String {
        let rest = stream.finish();
        let (mut visible, stopped) = self.feed(&rest);
        if !stopped {
            visible.push_str(&std::mem::take(&mut self.held));
        }
        visible
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let stops = vec!["</end>".to_string()];
        let mut matcher = StopMatcher::new(&stops);
        assert_eq!(matcher.feed("Hello </"), ("Hello ".to_string(), false));
        assert_eq!(matcher.feed("en"), (String::new(), false));
        assert_eq!(matcher.feed("d> more"), (String::new(), true));
    }

    #[test]
    fn held_text_that_was_not_a_stop_is_released() {
        let stops = vec!["STOP".to_string()];
        let mut matcher = StopMatcher::new(&stops);
        assert_eq!(matcher.feed("ST"), (String::new(), false));
        assert_eq!(matcher.feed("ay"), ("STay".to_string(), false));
    }
}
