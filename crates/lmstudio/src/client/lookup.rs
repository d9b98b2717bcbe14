//! How a query names a loaded instance: the one lookup rule of both backends.

use crate::types::result::ModelInfo;

/// Whether a loaded instance answers to `query` (its identifier or its instance reference).
pub(super) fn answers_to(info: &ModelInfo, query: &str) -> bool {
    info.identifier.as_deref() == Some(query) || info.instance_reference.as_deref() == Some(query)
}

/// The loaded instance `query` names, else any instance of the model whose key it is (`key`, or
/// `key:2` once `key` was unloaded), else one whose file is under the `publisher/model` folder it
/// names (LM Studio's long form of a key): the one lookup rule of both backends.
pub(super) fn find_instance<'a, T>(loaded: &'a [T], info: impl Fn(&T) -> &ModelInfo, query: &str) -> Option<&'a T> {
    let named = loaded.iter().find(|l| answers_to(info(l), query));
    let keyed = || loaded.iter().find(|l| info(l).model_key == query);
    let folder = query.to_lowercase();
    let under = || {
        let under_folder = |l: &&T| info(l).path.to_lowercase().starts_with(&folder);
        folder.contains('/').then(|| loaded.iter().find(under_folder)).flatten()
    };
    named.or_else(keyed).or_else(under)
}
