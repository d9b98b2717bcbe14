//! Reasoning split out of an answer, as LM Studio does: a model that thinks writes
//! `<think>...</think>` (or its template's markers) before its answer, and each piece of output
//! is labelled reasoning, a marker, or answer while it streams, the same however the output is
//! cut into pieces. Pure: no engine here.

use crate::types::result::ReasoningType;

/// Splits a prediction's output into reasoning and answer as it streams.
#[derive(Debug)]
pub(crate) struct ReasoningReader {
    start: String,
    end: String,
    state: State,
    /// Output not labelled yet: it may be the start of a marker.
    held: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but space yet: the output may open with the start marker.
    Before,
    /// Just after the start marker: space before the reasoning is left out.
    AfterStart,
    Inside,
    /// Just after the end marker: space before the answer is left out.
    AfterEnd,
    Answer,
}

/// Labelled pieces of output.
pub(crate) type Pieces = Vec<(ReasoningType, String)>;

impl ReasoningReader {
    /// A reader for markers `start` and `end`; `inside` when the prompt itself opened the
    /// reasoning (a template that ends with the start marker).
    pub(crate) fn new(start: &str, end: &str, inside: bool) -> Self {
        let state = if inside { State::Inside } else { State::Before };
        Self { start: start.to_owned(), end: end.to_owned(), state, held: String::new() }
    }

    /// Labels the next piece of output: what can be told now.
    pub(crate) fn feed(&mut self, text: &str) -> Pieces {
        let mut out = Pieces::new();
        self.held.push_str(text);
        loop {
            match self.state {
                State::Before => {
                    let trimmed = self.held.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(self.start.as_str()) {
                        out.push((ReasoningType::StartTag, self.start.clone()));
                        self.held = rest.to_owned();
                        self.state = State::AfterStart;
                    } else if self.start.starts_with(trimmed) {
                        return out;
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Inside => match self.held.find(self.end.as_str()) {
                    Some(at) => {
                        push(&mut out, ReasoningType::Reasoning, &self.held[..at]);
                        out.push((ReasoningType::EndTag, self.end.clone()));
                        self.held = self.held[at + self.end.len()..].to_owned();
                        self.state = State::AfterEnd;
                    }
                    None => {
                        let keep = self.held.len() - partial_marker_len(&self.held, &self.end);
                        push(&mut out, ReasoningType::Reasoning, &self.held[..keep]);
                        self.held.drain(..keep);
                        return out;
                    }
                },
                State::AfterStart | State::AfterEnd => {
                    let trimmed = self.held.trim_start();
                    if trimmed.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = trimmed.to_owned();
                    self.state = if self.state == State::AfterStart { State::Inside } else { State::Answer };
                }
                State::Answer => {
                    push(&mut out, ReasoningType::None, &std::mem::take(&mut self.held));
                    return out;
                }
            }
        }
    }

    /// The output has ended: what was held, labelled as it stands (a start marker cut short is
    /// answer; reasoning cut short is reasoning).
    pub(crate) fn finish(&mut self) -> Pieces {
        let mut out = Pieces::new();
        let kind = if self.state == State::Inside { ReasoningType::Reasoning } else { ReasoningType::None };
        if !matches!(self.state, State::AfterStart | State::AfterEnd) {
            push(&mut out, kind, &std::mem::take(&mut self.held));
        }
        out
    }
}

fn push(out: &mut Pieces, kind: ReasoningType, text: &str) {
    if !text.is_empty() {
        out.push((kind, text.to_owned()));
    }
}

/// How many bytes at the end of `text` may be the start of `marker` (on a character boundary).
fn partial_marker_len(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && marker.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReasoningType::{EndTag, Reasoning, StartTag};

    fn read(inside: bool, pieces: &[&str]) -> Pieces {
        let mut reader = ReasoningReader::new("<think>", "</think>", inside);
        let mut out: Pieces = pieces.iter().flat_map(|p| reader.feed(p)).collect();
        out.extend(reader.finish());
        // Adjacent pieces of one kind, joined: how they are cut is the stream's business.
        out.into_iter().fold(Pieces::new(), |mut acc, (kind, text)| {
            match acc.last_mut() {
                Some((k, t)) if *k == kind && kind != StartTag && kind != EndTag => t.push_str(&text),
                _ => acc.push((kind, text)),
            }
            acc
        })
    }

    fn owned(pieces: &[(ReasoningType, &str)]) -> Pieces {
        pieces.iter().map(|(k, t)| (*k, (*t).to_owned())).collect()
    }

    #[test]
    fn reasoning_is_split_from_the_answer_however_the_output_is_cut() {
        let whole = "\n<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.";
        let expected = owned(&[
            (StartTag, "<think>"),
            (Reasoning, "Let me see: 2+2.\n"),
            (EndTag, "</think>"),
            (ReasoningType::None, "It is 4."),
        ]);
        assert_eq!(read(false, &[whole]), expected);
        let by_char: Vec<String> = whole.chars().map(String::from).collect();
        assert_eq!(read(false, &by_char.iter().map(String::as_str).collect::<Vec<_>>()), expected);
        assert_eq!(read(false, &["\n<th", "ink>\nLet me see: 2+2.\n</", "think>\n\nIt is 4."]), expected);
    }

    #[test]
    fn output_without_reasoning_is_all_answer() {
        assert_eq!(read(false, &[" Hello", " <think>"]), owned(&[(ReasoningType::None, " Hello <think>")]));
        assert_eq!(read(false, &["<thi"]), owned(&[(ReasoningType::None, "<thi")]), "a marker cut short");
        assert_eq!(read(false, &["<thinking"]), owned(&[(ReasoningType::None, "<thinking")]));
        assert_eq!(read(false, &[]), Pieces::new());
    }

    #[test]
    fn a_prompt_that_opens_the_reasoning_starts_inside_it() {
        let expected = owned(&[(Reasoning, "Hmm.\n"), (EndTag, "</think>"), (ReasoningType::None, "Yes.")]);
        assert_eq!(read(true, &["Hmm.\n</th", "ink>Yes."]), expected);
        // Cut short while thinking: all of it is reasoning; a partial end marker too.
        assert_eq!(read(true, &["Hmm, é", "</thi"]), owned(&[(Reasoning, "Hmm, é</thi")]));
    }
}
