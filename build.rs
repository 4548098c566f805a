//! Records the git commit a binary was built from, for `run.json`; with the `tch` feature,
//! compiles `src/engine/libtorch.cpp` against the libtorch that torch-sys links.

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok());
    if let Some(commit) = commit {
        println!("cargo:rustc-env=SWEEP_GIT_COMMIT={}", commit.trim());
    }
    #[cfg(feature = "tch")]
    libtorch::compile();
}

/// Found the way torch-sys finds it: `LIBTORCH`, or the Python environment's torch with
/// `LIBTORCH_USE_PYTORCH`.
#[cfg(feature = "tch")]
mod libtorch {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    const SOURCE: &str = "src/engine/libtorch.cpp";

    pub fn compile() {
        println!("cargo:rerun-if-changed={SOURCE}");
        for var in ["LIBTORCH", "LIBTORCH_USE_PYTORCH", "LIBTORCH_CXX11_ABI"] {
            println!("cargo:rerun-if-env-changed={var}");
        }
        let (includes, lib, abi) = locate();
        cc::Build::new()
            .cpp(true)
            .std("c++17")
            .file(SOURCE)
            .includes(&includes)
            .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
            .warnings(false)
            .compile("sweep_libtorch");
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-lib=dylib=torch_cpu");
        println!("cargo:rustc-link-lib=dylib=c10");
    }

    /// Include directories, library directory and C++11 ABI flag.
    fn locate() -> (Vec<PathBuf>, PathBuf, String) {
        if let Ok(root) = env::var("LIBTORCH") {
            let root = PathBuf::from(root);
            let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
            return (
                vec![
                    root.join("include"),
                    root.join("include/torch/csrc/api/include"),
                ],
                root.join("lib"),
                abi,
            );
        }
        let python = if env::var_os("VIRTUAL_ENV").is_some() {
            "python"
        } else {
            "python3"
        };
        let script = "import torch\nfrom torch.utils import cpp_extension\n\
            print('ABI', int(torch._C._GLIBCXX_USE_CXX11_ABI))\n\
            for p in cpp_extension.include_paths(): print('INCLUDE', p)\n\
            for p in cpp_extension.library_paths(): print('LIB', p)\n";
        let out = Command::new(python)
            .args(["-c", script])
            .output()
            .unwrap_or_else(|e| panic!("running {python} to find torch: {e}"));
        assert!(
            out.status.success(),
            "{python} could not import torch; set LIBTORCH or LIBTORCH_USE_PYTORCH=1 as the README says: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (mut includes, mut lib, mut abi) = (Vec::new(), None, "1".to_string());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            match line.split_once(' ') {
                Some(("ABI", v)) => abi = v.to_string(),
                Some(("INCLUDE", p)) => includes.push(PathBuf::from(p)),
                Some(("LIB", p)) if lib.is_none() => lib = Some(PathBuf::from(p)),
                _ => {}
            }
        }
        (
            includes,
            lib.expect("torch reports its library directory"),
            abi,
        )
    }
}
