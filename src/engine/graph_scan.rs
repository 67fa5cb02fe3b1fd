//! What the decoder graph is made of, read from `model.onnx` without loading it: the operators,
//! how the weights are stored, and the Phi-family features (LongRoPE's two rotary tables, partial
//! rotary, embeddings tied to the int4 lm_head). ONNX Runtime's API does not expose nodes, so this
//! walks the protobuf encoding directly, reading only the graph's structure: weight payloads are
//! skipped with seeks, so a model with embedded weights costs no more than one with external data.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufReader, Read, Seek},
    path::Path,
};

/// One node's (or initializer's) encoding is read into memory only up to this size.
const MAX_NODE_BYTES: u64 = 64 * 1024 * 1024;

/// What the decoder graph shows about the model.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GraphSummary {
    /// Operator type → how many nodes use it.
    pub operators: BTreeMap<String, usize>,
    /// `bits` and `block_size` of the `MatMulNBits` nodes (block-quantized weights).
    pub quantized_bits: Option<i64>,
    pub quantized_block_size: Option<i64>,
    /// The element type of plain float MatMul weights (`"float16"`, `"float32"`).
    pub float_weights: Option<String>,
    /// Two rotary tables chosen by an `If` on the sequence length (LongRoPE).
    pub long_rope: bool,
    /// Where LongRoPE switches tables: the long one is used when the attention mask is longer
    /// than this (`original_max_position_embeddings`), when the `If` compares it with a constant.
    pub long_rope_switch: Option<usize>,
    /// Columns of the rotary table (half the rotated dimensions of a head), when it is an
    /// initializer of the main graph or a constant of the LongRoPE branches.
    pub rotary_columns: Option<usize>,
    /// The embedding is gathered from the quantized lm_head (`GatherBlockQuantized`).
    pub tied_embeddings: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the graph of {path}: {message}")]
pub struct ScanError {
    path: String,
    message: String,
}

/// Reads the structure of the ONNX graph at `path`.
pub fn scan(path: &Path) -> Result<GraphSummary, ScanError> {
    let error = |message: String| ScanError { path: path.display().to_string(), message };
    let file = File::open(path).map_err(|e| error(e.to_string()))?;
    let length = file.metadata().map_err(|e| error(e.to_string()))?.len();
    let mut reader = BufReader::new(file);
    let mut summary = GraphSummary::default();
    let mut wiring = Wiring::default();
    let mut model = Fields { end: length, position: 0 };
    while let Some((field, kind)) = model.next(&mut reader).map_err(error)? {
        // ModelProto.graph
        if field == 7 && kind == WireKind::Bytes {
            let size = model.length(&mut reader).map_err(error)?;
            let mut graph = Fields { end: model.position + size, position: model.position };
            while let Some((field, kind)) = graph.next(&mut reader).map_err(error)? {
                match (field, kind) {
                    (1, WireKind::Bytes) => {
                        let bytes = graph.bytes(&mut reader).map_err(error)?;
                        read_node(&bytes, &mut summary, &mut wiring, 0).map_err(error)?;
                    }
                    (5, WireKind::Bytes) => read_initializer(&mut graph, &mut reader, &mut summary).map_err(error)?,
                    _ => graph.skip(&mut reader, kind).map_err(error)?,
                }
            }
            model.position = graph.position;
        } else {
            model.skip(&mut reader, kind).map_err(error)?;
        }
    }
    summary.long_rope_switch = wiring.long_rope_switch();
    Ok(summary)
}

/// The few connections needed to find LongRoPE's switch: `If(Greater(length, Constant))`.
#[derive(Default)]
struct Wiring {
    /// The input of the `If` that chooses the rotary tables.
    if_condition: Option<String>,
    /// `Greater` outputs → their second input.
    greater: BTreeMap<String, String>,
    /// Outputs of `Constant` nodes holding one int64.
    constants: BTreeMap<String, i64>,
}

impl Wiring {
    fn long_rope_switch(&self) -> Option<usize> {
        let bound = self.greater.get(self.if_condition.as_ref()?)?;
        usize::try_from(*self.constants.get(bound)?).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WireKind {
    Varint,
    Fixed64,
    Bytes,
    Fixed32,
}

/// A run of protobuf fields in the file, from `position` to `end`.
struct Fields {
    end: u64,
    position: u64,
}

impl Fields {
    fn next<R: Read>(&mut self, reader: &mut R) -> Result<Option<(u64, WireKind)>, String> {
        if self.position >= self.end {
            return Ok(None);
        }
        let tag = self.varint(reader)?;
        let kind = match tag & 7 {
            0 => WireKind::Varint,
            1 => WireKind::Fixed64,
            2 => WireKind::Bytes,
            5 => WireKind::Fixed32,
            other => return Err(format!("unsupported protobuf wire type {other} at byte {}", self.position)),
        };
        Ok(Some((tag >> 3, kind)))
    }

    fn varint<R: Read>(&mut self, reader: &mut R) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            reader.read_exact(&mut byte).map_err(|e| format!("truncated at byte {}: {e}", self.position))?;
            self.position += 1;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("a varint longer than 10 bytes at byte {}", self.position))
    }

    fn length<R: Read>(&mut self, reader: &mut R) -> Result<u64, String> {
        let length = self.varint(reader)?;
        if self.position.checked_add(length).is_none_or(|end| end > self.end) {
            return Err(format!("a field of {length} bytes at byte {} runs past its message", self.position));
        }
        Ok(length)
    }

    fn bytes<R: Read>(&mut self, reader: &mut R) -> Result<Vec<u8>, String> {
        let length = self.length(reader)?;
        if length > MAX_NODE_BYTES {
            return Err(format!("a node of {length} bytes at byte {} (at most {MAX_NODE_BYTES})", self.position));
        }
        let mut bytes = vec![0u8; length as usize];
        reader.read_exact(&mut bytes).map_err(|e| format!("truncated at byte {}: {e}", self.position))?;
        self.position += length;
        Ok(bytes)
    }

    fn skip<R: Read + Seek>(&mut self, reader: &mut BufReader<R>, kind: WireKind) -> Result<(), String> {
        let length = match kind {
            WireKind::Varint => return self.varint(reader).map(|_| ()),
            WireKind::Fixed64 => 8,
            WireKind::Fixed32 => 4,
            WireKind::Bytes => self.length(reader)?,
        };
        let offset = i64::try_from(length).map_err(|_| format!("a field of {length} bytes"))?;
        reader.seek_relative(offset).map_err(|e| format!("cannot skip {length} bytes at byte {}: {e}", self.position))?;
        self.position += length;
        Ok(())
    }
}

/// An in-memory protobuf message, field by field.
struct Message<'a> {
    bytes: &'a [u8],
    at: usize,
}

enum Value<'a> {
    Int(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Message<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or("a truncated varint")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Int(self.varint()?),
            1 | 5 => {
                self.at += if tag & 7 == 1 { 8 } else { 4 };
                Value::Fixed
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| "a field longer than memory")?;
                let end = self.at.checked_add(length).filter(|&end| end <= self.bytes.len()).ok_or("a field runs past its message")?;
                let slice = &self.bytes[self.at..end];
                self.at = end;
                Value::Bytes(slice)
            }
            other => return Err(format!("unsupported protobuf wire type {other}")),
        };
        Ok(Some((tag >> 3, value)))
    }
}

/// NodeProto: input 1, output 2, op_type 4, attribute 5. Subgraphs (the LongRoPE `If`) are read
/// too, a few levels deep.
fn read_node(bytes: &[u8], summary: &mut GraphSummary, wiring: &mut Wiring, depth: usize) -> Result<(), String> {
    let mut message = Message::new(bytes);
    let mut op_type = String::new();
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut attributes = Vec::new();
    while let Some((field, value)) = message.next_field()? {
        match (field, value) {
            (1, Value::Bytes(text)) => inputs.push(String::from_utf8_lossy(text).into_owned()),
            (2, Value::Bytes(text)) => outputs.push(String::from_utf8_lossy(text).into_owned()),
            (4, Value::Bytes(text)) => op_type = String::from_utf8_lossy(text).into_owned(),
            (5, Value::Bytes(attribute)) => attributes.push(attribute),
            _ => {}
        }
    }
    *summary.operators.entry(op_type.clone()).or_default() += 1;
    match op_type.as_str() {
        "If" if outputs.iter().any(|o| o == "cos_cache") => {
            summary.long_rope = true;
            wiring.if_condition = inputs.first().cloned();
        }
        "Greater" => {
            if let (Some(output), Some(bound)) = (outputs.first(), inputs.get(1)) {
                wiring.greater.insert(output.clone(), bound.clone());
            }
        }
        "GatherBlockQuantized" => summary.tied_embeddings = true,
        _ => {}
    }
    for attribute in attributes {
        let mut message = Message::new(attribute);
        let (mut name, mut int, mut graph, mut tensor) = (String::new(), None, None, None);
        while let Some((field, value)) = message.next_field()? {
            match (field, value) {
                (1, Value::Bytes(text)) => name = String::from_utf8_lossy(text).into_owned(),
                (3, Value::Int(value)) => int = Some(value as i64),
                (5, Value::Bytes(bytes)) => tensor = Some(bytes),
                (6, Value::Bytes(bytes)) => graph = Some(bytes),
                _ => {}
            }
        }
        match (op_type.as_str(), name.as_str()) {
            ("MatMulNBits", "bits") => summary.quantized_bits = int,
            ("MatMulNBits", "block_size") => summary.quantized_block_size = int,
            ("Constant", "value") if outputs.iter().any(|o| o.starts_with("cos_cache")) => {
                if let Some(tensor) = tensor {
                    summary.rotary_columns = tensor_header(tensor)?.0.get(1).map(|&d| d as usize);
                }
            }
            ("Constant", "value") => {
                if let (Some(value), Some(output)) = (tensor.map(int64_scalar).transpose()?.flatten(), outputs.first()) {
                    wiring.constants.insert(output.clone(), value);
                }
            }
            _ => {}
        }
        if let (Some(graph), true) = (graph, depth < 4) {
            let mut message = Message::new(graph);
            while let Some((field, value)) = message.next_field()? {
                if let (1, Value::Bytes(node)) = (field, value) {
                    read_node(node, summary, wiring, depth + 1)?;
                }
            }
        }
    }
    Ok(())
}

/// The value of a TensorProto holding exactly one int64 (data type 7): from `int64_data` (field
/// 7, packed or not) or `raw_data` (9, little-endian).
fn int64_scalar(bytes: &[u8]) -> Result<Option<i64>, String> {
    let mut message = Message::new(bytes);
    let (mut dims, mut data_type, mut values) = (Vec::new(), 0, Vec::new());
    while let Some((field, value)) = message.next_field()? {
        match (field, value) {
            (1, Value::Int(d)) => dims.push(d),
            (1, Value::Bytes(packed)) => dims.extend(packed_varints(packed)?),
            (2, Value::Int(t)) => data_type = t,
            (7, Value::Int(v)) => values.push(v as i64),
            (7, Value::Bytes(packed)) => values.extend(packed_varints(packed)?.into_iter().map(|v| v as i64)),
            (9, Value::Bytes(raw)) => {
                if let Ok(raw) = <[u8; 8]>::try_from(raw) {
                    values.push(i64::from_le_bytes(raw));
                }
            }
            _ => {}
        }
    }
    let one = dims.iter().product::<u64>() == 1;
    Ok((data_type == 7 && one && values.len() == 1).then(|| values[0]))
}

/// A packed repeated varint field.
fn packed_varints(bytes: &[u8]) -> Result<Vec<u64>, String> {
    let mut packed = Message::new(bytes);
    let mut values = Vec::new();
    while packed.at < packed.bytes.len() {
        values.push(packed.varint()?);
    }
    Ok(values)
}

/// TensorProto's dims (field 1, packed or not), data type (2) and name (8).
fn tensor_header(bytes: &[u8]) -> Result<(Vec<i64>, u64, String), String> {
    let mut message = Message::new(bytes);
    let (mut dims, mut data_type, mut name) = (Vec::new(), 0, String::new());
    while let Some((field, value)) = message.next_field()? {
        match (field, value) {
            (1, Value::Int(d)) => dims.push(d as i64),
            (1, Value::Bytes(packed)) => dims.extend(packed_varints(packed)?.into_iter().map(|d| d as i64)),
            (2, Value::Int(t)) => data_type = t,
            (8, Value::Bytes(text)) => name = String::from_utf8_lossy(text).into_owned(),
            _ => {}
        }
    }
    Ok((dims, data_type, name))
}

/// An initializer: only its header is read; its data (raw_data, field 9, and the typed lists) is
/// skipped.
fn read_initializer<R: Read + Seek>(graph: &mut Fields, reader: &mut BufReader<R>, summary: &mut GraphSummary) -> Result<(), String> {
    let size = graph.length(reader)?;
    let mut fields = Fields { end: graph.position + size, position: graph.position };
    let (mut dims, mut data_type, mut name) = (Vec::new(), 0, String::new());
    while let Some((field, kind)) = fields.next(reader)? {
        match (field, kind) {
            (1, WireKind::Varint) => dims.push(fields.varint(reader)? as i64),
            (1, WireKind::Bytes) => {
                let packed = fields.bytes(reader)?;
                let mut packed = Message::new(&packed);
                while packed.at < packed.bytes.len() {
                    dims.push(packed.varint()? as i64);
                }
            }
            (2, WireKind::Varint) => data_type = fields.varint(reader)?,
            (8, WireKind::Bytes) => name = String::from_utf8_lossy(&fields.bytes(reader)?).into_owned(),
            _ => fields.skip(reader, kind)?,
        }
    }
    graph.position = fields.position;
    if name == "cos_cache" {
        summary.rotary_columns = dims.get(1).map(|&d| d as usize);
    }
    if name.ends_with("MatMul.weight") && summary.float_weights.is_none() {
        summary.float_weights = match data_type {
            1 => Some("float32".into()),
            10 => Some("float16".into()),
            16 => Some("bfloat16".into()),
            _ => None,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).join("model.onnx")
    }

    #[test]
    fn the_int4_fixture_is_block_quantized_with_full_rotary() {
        let summary = scan(&fixture("tiny-phi3")).unwrap();
        assert_eq!(summary.operators.get("MatMulNBits"), Some(&11));
        assert_eq!(summary.operators.get("GroupQueryAttention"), Some(&2));
        assert_eq!((summary.quantized_bits, summary.quantized_block_size), (Some(4), Some(32)));
        assert_eq!(summary.rotary_columns, Some(16), "head 32, all of it rotated");
        assert!(!summary.long_rope && !summary.tied_embeddings);
        assert_eq!(summary.long_rope_switch, None);
    }

    #[test]
    fn phi4_features_and_fp16_weights_are_recognised() {
        let phi4 = scan(&fixture("tiny-phi4mini")).unwrap();
        assert!(phi4.long_rope && phi4.tied_embeddings);
        assert_eq!(phi4.long_rope_switch, Some(4096), "the long table is used past 4096 tokens");
        assert_eq!(phi4.rotary_columns, Some(24), "48 of 64 dimensions rotate");
        let fp16 = scan(&fixture("tiny-phi3-fp16")).unwrap();
        assert_eq!(fp16.float_weights.as_deref(), Some("float16"));
        assert_eq!(fp16.quantized_bits, None);
    }

    #[test]
    fn truncated_or_junk_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(fixture("tiny-phi3")).unwrap();
        let truncated = dir.path().join("truncated.onnx");
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        assert!(scan(&truncated).is_err());
        let junk = dir.path().join("junk.onnx");
        std::fs::write(&junk, [0xffu8; 64]).unwrap();
        assert!(scan(&junk).is_err());
    }
}
