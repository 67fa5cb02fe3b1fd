//! The Phi ONNX releases people download, with the variant folders each repository holds and the
//! execution provider each needs. Sizes are the Hub's figures (its tree pages, see
//! `../shared/docs/model-download.md` §4), shown before any request; the listing gives the exact
//! total once the user picks a variant.

/// What a variant needs to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
    DirectMl,
    /// Built for GPUs through either CUDA or DirectML.
    Gpu,
}

impl Provider {
    /// ONNX Runtime execution providers any one of which runs this variant.
    pub fn execution_providers(self) -> &'static [&'static str] {
        match self {
            Provider::Cpu => &["CPUExecutionProvider"],
            Provider::Cuda => &["CUDAExecutionProvider"],
            Provider::DirectMl => &["DmlExecutionProvider"],
            Provider::Gpu => &["CUDAExecutionProvider", "DmlExecutionProvider"],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "NVIDIA GPU (CUDA)",
            Provider::DirectMl => "GPU on Windows (DirectML)",
            Provider::Gpu => "GPU (CUDA or DirectML)",
        }
    }

    /// Whether ONNX Runtime, offering `available` providers, can run this variant.
    pub fn is_available(self, available: &[String]) -> bool {
        self.execution_providers().iter().any(|wanted| available.iter().any(|have| have == wanted))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The folder inside the repository that holds `genai_config.json`.
    pub folder: &'static str,
    pub label: &'static str,
    pub provider: Provider,
    /// About this many bytes, from the Hub's pages; `None` where no figure was recorded.
    pub approx_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogModel {
    pub title: &'static str,
    pub repo: &'static str,
    pub context: &'static str,
    /// The first variant is the CPU int4 one, preselected.
    pub variants: &'static [Variant],
}

impl CatalogModel {
    pub fn preselected(&self) -> &Variant {
        &self.variants[0]
    }

    /// Variants ONNX Runtime can run here, the preselected CPU one first.
    pub fn offered(&self, available: &[String]) -> impl Iterator<Item = &Variant> {
        self.variants.iter().filter(|variant| variant.provider.is_available(available))
    }
}

const GB: u64 = 1_000_000_000;
const MB: u64 = 1_000_000;

const fn variant(folder: &'static str, label: &'static str, provider: Provider, approx_bytes: Option<u64>) -> Variant {
    Variant { folder, label, provider, approx_bytes }
}

/// The catalog, most popular first.
pub const CATALOG: &[CatalogModel] = &[
    CatalogModel {
        title: "Phi-3 mini 4k instruct",
        repo: "microsoft/Phi-3-mini-4k-instruct-onnx",
        context: "4k tokens",
        variants: &[
            // 2.72 GB of weights, the 231 kB graph and the tokenizer files.
            variant("cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4", "CPU, int4", Provider::Cpu, Some(2_720 * MB + 3 * MB)),
            variant("cpu_and_mobile/cpu-int4-rtn-block-32", "CPU, int4 (accuracy level 1)", Provider::Cpu, None),
            variant("cuda/cuda-int4-rtn-block-32", "CUDA, int4", Provider::Cuda, None),
            variant("cuda/cuda-fp16", "CUDA, fp16", Provider::Cuda, None),
            variant("directml/directml-int4-awq-block-128", "DirectML, int4", Provider::DirectMl, None),
        ],
    },
    CatalogModel {
        title: "Phi-3 mini 128k instruct",
        repo: "microsoft/Phi-3-mini-128k-instruct-onnx",
        context: "128k tokens",
        variants: &[
            // 2.72 GB of weights and a 52.1 MB graph.
            variant("cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4", "CPU, int4", Provider::Cpu, Some(2_720 * MB + 55 * MB)),
            variant("directml/directml-int4-awq-block-128", "DirectML, int4", Provider::DirectMl, None),
        ],
    },
    CatalogModel {
        title: "Phi-3.5 mini instruct",
        repo: "microsoft/Phi-3.5-mini-instruct-onnx",
        context: "128k tokens",
        variants: &[
            // 2.73 GB of weights and a 52.2 MB graph.
            variant("cpu_and_mobile/cpu-int4-awq-block-128-acc-level-4", "CPU, int4", Provider::Cpu, Some(2_730 * MB + 54 * MB)),
            variant("cuda/cuda-int4-awq-block-128", "CUDA, int4", Provider::Cuda, None),
            variant("cuda/cuda-fp16", "CUDA, fp16", Provider::Cuda, Some(7_640 * MB + 28 * MB)),
            variant("gpu/gpu-int4-awq-block-128", "GPU, int4", Provider::Gpu, Some(2_310 * MB)),
        ],
    },
    CatalogModel {
        title: "Phi-4 mini instruct",
        repo: "microsoft/Phi-4-mini-instruct-onnx",
        context: "128k tokens",
        variants: &[
            variant("cpu_and_mobile/cpu-int4-rtn-block-32-acc-level-4", "CPU, int4", Provider::Cpu, Some(4_930 * MB)),
            // The Hub's figure for its weights alone.
            variant("gpu/gpu-int4-rtn-block-32", "GPU, int4", Provider::Gpu, Some(3_410 * MB)),
        ],
    },
];

/// Gigabytes with one decimal, for the catalog's "about 2.7 GB".
pub fn approx_label(bytes: u64) -> String {
    format!("about {:.1} GB", bytes as f64 / GB as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{RepoId, clean_relative_path};

    #[test]
    fn every_entry_is_a_valid_repo_with_a_cpu_int4_variant_first() {
        assert_eq!(CATALOG.len(), 4);
        for model in CATALOG {
            RepoId::parse(model.repo).unwrap();
            let first = model.preselected();
            assert_eq!((first.provider, first.label), (Provider::Cpu, "CPU, int4"), "{}", model.repo);
            assert!(first.approx_bytes.is_some(), "{}", model.repo);
            for variant in model.variants {
                assert_eq!(clean_relative_path(variant.folder).as_deref(), Some(variant.folder));
            }
        }
    }

    #[test]
    fn gpu_variants_are_offered_only_with_their_provider() {
        let cpu_only = vec!["CPUExecutionProvider".to_owned()];
        let with_dml = vec!["DmlExecutionProvider".to_owned(), "CPUExecutionProvider".to_owned()];
        let phi4 = &CATALOG[3];
        assert_eq!(phi4.offered(&cpu_only).count(), 1);
        assert_eq!(phi4.offered(&with_dml).map(|v| v.folder).collect::<Vec<_>>(), [phi4.variants[0].folder, "gpu/gpu-int4-rtn-block-32"]);
        assert!(!Provider::Cuda.is_available(&with_dml));
        assert_eq!(approx_label(2_723 * MB), "about 2.7 GB");
    }
}
