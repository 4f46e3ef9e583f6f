//! Compiles `proto/glaux.proto` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/glaux.proto");
    let descriptors = protox::compile(["proto/glaux.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A finished task's progress also travels as JSON, in trailers (`EndedTask`).
        .type_attribute("glaux.TaskProgress", "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]")
        .compile_fds(descriptors)?;
    Ok(())
}
