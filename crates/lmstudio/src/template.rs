//! Chat templates: the Jinja template a model file carries (`tokenizer.chat_template`), rendered
//! with minijinja the way Hugging Face's `transformers` renders it (blocks trimmed, Python's string
//! and dict methods, `raise_exception`), so that a chat reaches the model exactly as it was trained
//! to see one. Pure: the engine hands in the template and the model's BOS/EOS texts.
//!
//! Templates come from model files, which may be hostile: rendering runs on a fuel budget, so a
//! template that loops without end fails with an error instead of hanging the caller.

use minijinja::{Environment, ErrorKind};

use crate::types::error::{Error, Result};
use crate::types::result::ChatMessage;

/// ChatML, the format most chat models share: the template of a model file that has none.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + \
    message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Gemma's turn format (the template Gemma's instruct models carry, in short), for Gemma files
/// without a template, such as the base models: a first system message goes before the first user
/// message; assistant turns are the `model`'s, every other turn the `user`'s. Unlike the instruct
/// models' own template it takes any order of roles (LM Studio's SDK tests send two user
/// messages in a row, and a system message mid-chat).
const GEMMA: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
  {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
  {%- set loop_messages = messages[1:] -%}
{%- else -%}
  {%- set first_user_prefix = '' -%}
  {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
  {%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}
  {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
  {{ '<start_of_turn>model\n' }}
{%- endif -%}"#;

/// The template for a model file that carries none: its family's format, else ChatML.
pub(crate) fn fallback_for(architecture: Option<&str>) -> &'static str {
    if architecture.is_some_and(|a| a.starts_with("gemma")) {
        GEMMA
    } else {
        CHATML
    }
}

/// Template instructions a render may run: far more than any real chat takes (Gemma 3's template
/// runs a few dozen per message), and well under a second of work.
const FUEL: u64 = 20_000_000;

/// A model's chat template, compiled once.
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// How its model carries tool calls.
    tool_syntax: crate::tools::Syntax,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("bos", &self.bos).field("eos", &self.eos).finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos` and `eos` are the texts of the model's BOS and EOS tokens.
    pub(crate) fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.map_err(|e| Error::Engine(format!("template syntax: {e}")))?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        env.set_fuel(Some(FUEL));
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| Error::InvalidPrompt(format!("the model's chat template does not compile: {e:#}")))?;
        let tool_syntax = crate::tools::syntax_of(source);
        Ok(Self { env, bos: bos.to_owned(), eos: eos.to_owned(), tool_syntax })
    }

    /// How its model carries tool calls.
    pub(crate) fn tool_syntax(&self) -> crate::tools::Syntax {
        self.tool_syntax
    }

    /// The chat as the model sees it, ready for the assistant's turn.
    #[cfg(test)]
    pub(crate) fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        self.render_with(messages, &[], None)
    }

    /// [`ChatTemplate::render`] with `tools` offered, as `transformers` passes them (none: the
    /// template's `tools` is undefined), and `enable_thinking` when set (the switch Qwen3's and
    /// other thinking models' templates read; undefined otherwise). Calls and results in the chat
    /// reach the template as `tool_calls` and `tool_call_id`.
    pub(crate) fn render_with(
        &self,
        messages: &[ChatMessage],
        tools: &[crate::tools::TemplateTool<'_>],
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        let template = self.env.get_template("chat").map_err(|e| Error::InvalidPrompt(e.to_string()))?;
        let messages: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| {
                let base = minijinja::context! { role => m.role.as_str(), content => m.content.as_str() };
                if m.tool_calls.is_empty() && m.tool_call_id.is_none() {
                    return base;
                }
                // Only what the message has: Llama 3.x's template asks `'tool_calls' in message`.
                let extra = match &m.tool_call_id {
                    Some(id) => minijinja::context! { tool_call_id => id.as_str() },
                    None => {
                        let calls: Vec<_> = m.tool_calls.iter().map(crate::tools::template_call).collect();
                        minijinja::context! { tool_calls => minijinja::Value::from(minijinja::value::Serde(&calls)) }
                    }
                };
                minijinja::context! { ..base, ..extra }
            })
            .collect();
        let tools = (!tools.is_empty()).then(|| minijinja::Value::from(minijinja::value::Serde(tools)));
        let context = minijinja::context! {
            messages => messages,
            tools => tools,
            add_generation_prompt => true,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        };
        // Left undefined unless set: some templates ask only whether it is defined.
        let context = match enable_thinking {
            Some(on) => minijinja::context! { enable_thinking => on, ..context },
            None => context,
        };
        template.render(context).map_err(|e| {
            let why = match e.kind() {
                ErrorKind::OutOfFuel => "it ran too long (a loop without end?)".to_owned(),
                ErrorKind::InvalidOperation => e.detail().unwrap_or("raise_exception").to_owned(),
                _ => format!("{e:#}"),
            };
            Error::InvalidPrompt(format!("the model's chat template refused this chat: {why}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect()
    }

    #[test]
    fn gemmas_format_puts_the_system_prompt_in_the_first_turn() {
        let t = ChatTemplate::new(fallback_for(Some("gemma3")), "<bos>", "<eos>").expect("compiles");
        let text =
            t.render(&chat(&[("system", "Be brief."), ("user", " Hi "), ("assistant", "Hello!"), ("user", "2+2?")]));
        assert_eq!(
            text.expect("renders"),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"
        );
        // Any order of roles: a later system message is a user turn.
        let text = t.render(&chat(&[("user", "a"), ("user", "b"), ("system", "c")])).expect("renders");
        assert_eq!(
            text,
            "<bos><start_of_turn>user\na<end_of_turn>\n<start_of_turn>user\nb<end_of_turn>\n\
             <start_of_turn>user\nc<end_of_turn>\n<start_of_turn>model\n"
        );
        // A template's own exception (here a made-up one) is the caller's error, with its message.
        let strict = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "", "").expect("compiles");
        match strict.render(&chat(&[("user", "a")])) {
            Err(Error::InvalidPrompt(m)) => assert!(m.contains("alternate"), "{m}"),
            other => panic!("expected the template's exception, got {other:?}"),
        }
    }

    #[test]
    fn chatml_is_the_fallback() {
        let t = ChatTemplate::new(fallback_for(Some("llama")), "", "").expect("compiles");
        assert_eq!(
            t.render(&chat(&[("user", "Hi")])).expect("renders"),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn hostile_templates_fail_cleanly() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(Error::InvalidPrompt(_))));
        let loops = "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}";
        let endless = ChatTemplate::new(loops, "", "").expect("compiles");
        match endless.render(&chat(&[("user", "x")])) {
            Err(Error::InvalidPrompt(m)) => assert!(m.contains("too long"), "{m}"),
            other => panic!("expected out of fuel, got {other:?}"),
        }
        // A thinking switch reaches the template only when set.
        let switch = "{{ 'thinks' if enable_thinking is not defined or enable_thinking else 'does not think' }}";
        let t = ChatTemplate::new(switch, "", "").expect("compiles");
        let said = |on| t.render_with(&chat(&[("user", "x")]), &[], on).expect("renders");
        assert_eq!(
            (said(None), said(Some(true)), said(Some(false))),
            ("thinks".into(), "thinks".into(), "does not think".into())
        );
        // Python's string methods work, as in transformers.
        let py = ChatTemplate::new("{{ messages[0]['content'].strip().upper() }}", "", "").expect("compiles");
        assert_eq!(py.render(&chat(&[("user", "  hi ")])).expect("renders"), "HI");
    }
}
