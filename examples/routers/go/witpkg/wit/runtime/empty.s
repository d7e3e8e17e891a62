// This file lets the package build for other targets than wasm (go vet,
// gopls): a function declared with //go:wasmimport has no Go body.
