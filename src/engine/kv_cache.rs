//! One sequence's KV cache, and the token ids whose keys and values it holds.
//!
//! The ids are what makes reuse across requests possible: a new prompt that starts with some of
//! them only needs the rest run through the model ([`KvCache::reusable_prefix`],
//! [`KvCache::rewind`]). Only tokens that were actually fed through the model are recorded (the
//! last token of a reply cut by a limit never was), so a rewound cache is always exactly what a
//! fresh run over the kept ids would have left.
//!
//! Shared mode keeps one buffer per layer and K/V, grown in [`KV_CHUNK_TOKENS`]-row chunks (at
//! least doubling, within the max length) and
//! never shrunk by a rewind (the next turn writes over the dropped rows); growing mode keeps the
//! previous step's presents and is cut to the kept rows on a rewind.

use half::f16;
use ort::{
    memory::Allocator,
    value::{DynValue, PrimitiveTensorElementType, Tensor},
};

use super::decoder::{DecoderError, DecoderIo, ElementType, KvMode, run_error};

/// Rows the shared KV buffers grow by.
pub const KV_CHUNK_TOKENS: usize = 256;

/// One sequence's KV cache.
pub struct KvCache {
    pub(super) mode: KvMode,
    pub(super) kv_type: ElementType,
    /// The ids whose keys and values are in the cache, in order.
    pub(super) tokens: Vec<i64>,
    pub(super) storage: KvStorage,
    /// Shared mode: the binding that ties the KV buffers to past and present.
    pub(super) binding: Option<ort::session::IoBinding>,
    /// How many logits rows the binding's preallocated output holds (0: ORT allocates).
    pub(super) logits_bound_rows: usize,
}

pub(super) enum KvStorage {
    Empty,
    SharedF32(Vec<Tensor<f32>>),
    SharedF16(Vec<Tensor<f16>>),
    Growing(Vec<DynValue>),
}

impl KvCache {
    pub(super) fn new(mode: KvMode, kv_type: ElementType) -> Self {
        Self { mode, kv_type, tokens: Vec::new(), storage: KvStorage::Empty, binding: None, logits_bound_rows: 0 }
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The ids whose keys and values are held.
    pub fn tokens(&self) -> &[i64] {
        &self.tokens
    }

    pub fn mode(&self) -> KvMode {
        self.mode
    }

    /// How many leading ids of `ids` the cache already holds (their longest common prefix).
    pub fn reusable_prefix(&self, ids: &[i64]) -> usize {
        self.tokens.iter().zip(ids).take_while(|(held, wanted)| held == wanted).count()
    }

    /// Forgets every token after the first `keep`. Shared buffers keep their size (what a later
    /// turn writes goes over the dropped rows); growing-mode tensors are cut to `keep` rows.
    pub fn rewind(&mut self, keep: usize) -> Result<(), DecoderError> {
        if keep >= self.tokens.len() {
            return Ok(());
        }
        if let KvStorage::Growing(past) = &mut self.storage {
            match self.kv_type {
                ElementType::F32 => cut_rows::<f32>(past, keep)?,
                ElementType::F16 => cut_rows::<f16>(past, keep)?,
            }
        }
        self.tokens.truncate(keep);
        Ok(())
    }

    /// Rows reserved per layer (shared mode), for memory reporting.
    pub fn capacity(&self) -> usize {
        fn rows<T: PrimitiveTensorElementType + std::fmt::Debug>(tensors: &[Tensor<T>]) -> usize {
            tensors.first().map(|t| t.shape()[2] as usize).unwrap_or(0)
        }
        match &self.storage {
            KvStorage::Empty => 0,
            KvStorage::SharedF32(t) => rows(t),
            KvStorage::SharedF16(t) => rows(t),
            KvStorage::Growing(_) => self.tokens.len(),
        }
    }
}

/// Cuts each `[1, heads, rows, head_size]` tensor to its first `keep` rows.
fn cut_rows<T: KvElement>(past: &mut [DynValue], keep: usize) -> Result<(), DecoderError> {
    for value in past.iter_mut() {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(run_error)?;
        let dims: Vec<usize> = shape.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
        let [batch, heads, rows, head_size] = dims[..] else {
            return Err(DecoderError::Contract(format!("a KV tensor has shape {dims:?}; expected 4 dimensions")));
        };
        if batch != 1 || keep > rows {
            return Err(DecoderError::Contract(format!("cannot cut a KV tensor of shape {dims:?} to {keep} rows")));
        }
        let mut kept = Vec::with_capacity(heads * keep * head_size);
        for head in 0..heads {
            let from = head * rows * head_size;
            kept.extend_from_slice(&data[from..from + keep * head_size]);
        }
        *value = Tensor::<T>::from_array(([1usize, heads, keep, head_size], kept)).map_err(run_error)?.into_dyn();
    }
    Ok(())
}

/// Element types the KV cache may hold.
pub(super) trait KvElement: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static {
    fn shared_buffers(storage: &mut KvStorage) -> &mut Vec<Tensor<Self>>;
    fn growing_past<'a>(storage: &'a mut KvStorage, io: &DecoderIo) -> Result<&'a mut Vec<DynValue>, DecoderError>;
}

impl KvElement for f32 {
    fn shared_buffers(storage: &mut KvStorage) -> &mut Vec<Tensor<f32>> {
        if !matches!(storage, KvStorage::SharedF32(_)) {
            *storage = KvStorage::SharedF32(Vec::new());
        }
        match storage {
            KvStorage::SharedF32(buffers) => buffers,
            _ => unreachable!("just set to SharedF32"),
        }
    }
    fn growing_past<'a>(storage: &'a mut KvStorage, io: &DecoderIo) -> Result<&'a mut Vec<DynValue>, DecoderError> {
        growing_storage::<f32>(storage, io)
    }
}

impl KvElement for f16 {
    fn shared_buffers(storage: &mut KvStorage) -> &mut Vec<Tensor<f16>> {
        if !matches!(storage, KvStorage::SharedF16(_)) {
            *storage = KvStorage::SharedF16(Vec::new());
        }
        match storage {
            KvStorage::SharedF16(buffers) => buffers,
            _ => unreachable!("just set to SharedF16"),
        }
    }
    fn growing_past<'a>(storage: &'a mut KvStorage, io: &DecoderIo) -> Result<&'a mut Vec<DynValue>, DecoderError> {
        growing_storage::<f16>(storage, io)
    }
}

fn growing_storage<'a, T: KvElement>(storage: &'a mut KvStorage, io: &DecoderIo) -> Result<&'a mut Vec<DynValue>, DecoderError> {
    if !matches!(storage, KvStorage::Growing(_)) {
        let empty = (0..2 * io.layers())
            .map(|_| {
                Tensor::<T>::from_array(([1usize, io.kv_heads, 0, io.head_size], Vec::<T>::new())).map(|t| t.into_dyn())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(run_error)?;
        *storage = KvStorage::Growing(empty);
    }
    match storage {
        KvStorage::Growing(values) => Ok(values),
        _ => unreachable!("just set to Growing"),
    }
}

/// Makes sure every shared buffer holds at least `total` rows, growing by whole chunks and at
/// least doubling (never beyond `capacity_hint`, the sequence's max length) and copying the `kept` rows already written.
/// Returns whether new buffers were made.
pub(super) fn ensure_capacity<T: KvElement>(
    buffers: &mut Vec<Tensor<T>>,
    io: &DecoderIo,
    kept: usize,
    total: usize,
    capacity_hint: usize,
) -> Result<bool, DecoderError> {
    let current = buffers.first().map(|t| t.shape()[2] as usize).unwrap_or(0);
    if buffers.len() == 2 * io.layers() && current >= total {
        return Ok(false);
    }
    let wanted = total.div_ceil(KV_CHUNK_TOKENS).saturating_mul(KV_CHUNK_TOKENS);
    // At least double what is there, so a conversation that keeps growing copies its cache a
    // logarithmic number of times rather than at every chunk (on Phi-3-mini's 32 layers a copy at
    // 2,000 tokens moves 1.5 GB). It then holds at most twice what it needs, and never more than
    // the max length, which onnxruntime-genai reserves up front.
    let capacity = wanted.max(current.saturating_mul(2)).min(capacity_hint.max(total));
    let allocator = Allocator::default();
    let (heads, head_size) = (io.kv_heads, io.head_size);
    let mut grown = Vec::with_capacity(2 * io.layers());
    for index in 0..2 * io.layers() {
        // Tensor::new zero-fills on CPU, as onnxruntime-genai does for its buffers.
        let mut fresh = Tensor::<T>::new(&allocator, [1usize, heads, capacity, head_size]).map_err(run_error)?;
        if let Some(old) = buffers.get(index) {
            let old_rows = old.shape()[2] as usize;
            let (_, source) = old.extract_tensor();
            let (_, target) = fresh.extract_tensor_mut();
            let row = head_size;
            for head in 0..heads {
                let from = head * old_rows * row;
                let to = head * capacity * row;
                target[to..to + kept * row].copy_from_slice(&source[from..from + kept * row]);
            }
        }
        grown.push(fresh);
    }
    *buffers = grown;
    Ok(true)
}
