export * from './ir';
export { grad } from './grad';
export { compile, DEFAULT_OPSET } from './onnx';
export type { CompiledModel, CompileOptions } from './onnx';
export { unbroadcast } from './ops';
