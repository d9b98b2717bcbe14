//! `/v1/embeddings` (issue 29, a first slice) driven by the `openai` package: base64 (its
//! default) and floats alike, an input the same alone or in a list, refusals by name.

use crate::{lms_client, run_python, start_server};

const EMBEDDINGS: &str = r#"
import os
import openai
from openai import OpenAI

c = OpenAI(base_url=f"http://{os.environ['HOST']}/v1", api_key="unused")
model = "gemma-3-270m"
texts = ["The cat sat on the mat.", "Quantum chromodynamics describes the strong force."]
r = c.embeddings.create(model=model, input=texts)
assert [d.index for d in r.data] == [0, 1] and r.model == model, r
v = r.data[0].embedding
assert abs(sum(x * x for x in v) - 1) < 1e-4, "unit vectors"
f = c.embeddings.create(model=model, input=texts, encoding_format="float")
assert all(abs(a - b) < 1e-6 for a, b in zip(f.data[1].embedding, r.data[1].embedding)), "base64 and floats agree"
one = c.embeddings.create(model=model, input=texts[1], encoding_format="float")
assert max(abs(a - b) for a, b in zip(one.data[0].embedding, f.data[1].embedding)) < 1e-5, "alone as in a list"
assert r.usage.prompt_tokens == f.usage.prompt_tokens > one.usage.prompt_tokens > 0, r.usage
for bad, name in [({"dimensions": 8}, "dimensions"), ({"input": [[1, 2, 3]]}, "token ids")]:
    try:
        c.embeddings.create(**{"model": model, "input": texts, "encoding_format": "float", **bad})
        raise AssertionError(f"{name} was taken")
    except openai.BadRequestError as e:
        assert name in str(e), e
print("EMBEDDINGS OK", len(v))
"#;

#[test]
fn openai_package_embeds() {
    let out = run_python(EMBEDDINGS, start_server(lms_client(1), None));
    assert!(out.contains("EMBEDDINGS OK"), "{out}");
}

/// LM Studio's Python SDK over the `embedding` namespace, with the default model (a decoder LLM,
/// mean-pooled): the vectors it gets are the ones `/v1/embeddings` gives, and the namespace lists
/// embedding models only (LM Studio's own suite runs its embedding tests on a nomic-bert).
const SDK_EMBEDDINGS: &str = r#"
import os
import lmstudio as lms
from openai import OpenAI

host = os.environ["HOST"]
texts = ["The cat sat on the mat.", "Quantum chromodynamics describes the strong force."]
with lms.Client(host) as client:
    model = client.embedding.model("gemma-3-270m")
    info = model.get_info()
    assert info.type == "embedding" and info.identifier == "gemma-3-270m", info
    one = model.embed(texts[0])
    both = model.embed(texts)
    assert len(both) == 2 and len(one) == len(both[0]) > 0
    assert max(abs(a - b) for a, b in zip(one, both[0])) < 1e-6, "one call or a list"
    assert model.count_tokens(texts[0]) + 1 == len(model.tokenize(texts[0])), "the BOS token"
    assert [m.identifier for m in client.embedding.list_loaded()] == [], "an LLM is no embedding model"
    assert [m.identifier for m in client.llm.list_loaded()] == ["gemma-3-270m"]
openai = OpenAI(base_url=f"http://{host}/v1", api_key="unused")
r = openai.embeddings.create(model="gemma-3-270m", input=texts, encoding_format="float")
for sdk, http in zip(both, r.data):
    assert max(abs(a - b) for a, b in zip(sdk, http.embedding)) < 1e-6, "the SDK and HTTP agree"
print("SDK EMBEDDINGS OK", len(one))
"#;

#[test]
fn python_sdk_embeds() {
    let out = run_python(SDK_EMBEDDINGS, start_server(lms_client(1), None));
    assert!(out.contains("SDK EMBEDDINGS OK"), "{out}");
}
