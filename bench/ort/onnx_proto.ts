/**
 * A tiny ONNX model writer: just enough protobuf (onnx.proto3's ModelProto / GraphProto / NodeProto /
 * AttributeProto / ValueInfoProto) to build one-node models such as com.microsoft MultiHeadAttention, so the
 * ONNX Runtime comparison needs neither Python nor a model file. Field numbers are onnx.proto's.
 */

/** Protobuf wire writer: varints, length-delimited fields, fixed32 floats. */
class Writer {
  private bytes: number[] = [];

  varint(n: number | bigint): this {
    let v = BigInt.asUintN(64, BigInt(n));
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
    return this;
  }

  private tag(field: number, wireType: number): this {
    return this.varint((field << 3) | wireType);
  }

  int(field: number, n: number): this {
    return this.tag(field, 0).varint(n);
  }

  float(field: number, x: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(new Float32Array([x]).buffer);
    this.bytes.push(...b);
    return this;
  }

  bytesField(field: number, data: Uint8Array): this {
    this.tag(field, 2).varint(data.length);
    for (const b of data) this.bytes.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytesField(field, new TextEncoder().encode(s));
  }

  message(field: number, build: (w: Writer) => void): this {
    const w = new Writer();
    build(w);
    return this.bytesField(field, w.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

/** onnx.TensorProto.DataType */
export const ElemType = {FLOAT: 1, INT32: 6, INT64: 7, FLOAT16: 10} as const;

export type AttributeValue = number | string | {float: number};

export interface OnnxNode {
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  /** Integers are written as INT attributes, {float: x} as FLOAT, strings as STRING. */
  attributes?: Record<string, AttributeValue>;
}

export interface OnnxValueInfo {
  name: string;
  elemType: number;
  /** A number is a fixed dim, a string a symbolic one. */
  dims: Array<number | string>;
}

export interface OnnxModel {
  nodes: OnnxNode[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  /** domain → opset version, e.g. {'': 17, 'com.microsoft': 1}. */
  opsets: Record<string, number>;
  graphName?: string;
}

function writeValueInfo(w: Writer, v: OnnxValueInfo): void {
  w.string(1, v.name);                                  // ValueInfoProto.name
  w.message(2, (type) => type.message(1, (tensor) => {  // TypeProto.tensor_type
    tensor.int(1, v.elemType);                          // TypeProto.Tensor.elem_type
    tensor.message(2, (shape) => {                      // TypeProto.Tensor.shape
      for (const d of v.dims) {
        shape.message(1, (dim) => typeof d === 'number' ? dim.int(1, d) : dim.string(2, d));  // dim_value / dim_param
      }
    });
  }));
}

function writeAttribute(w: Writer, name: string, value: AttributeValue): void {
  w.string(1, name);                                    // AttributeProto.name
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: use {float: x} for non-integers`);
    w.int(3, value).int(20, 2);                         // i, type = INT
  } else if (typeof value === 'string') {
    w.string(4, value).int(20, 3);                      // s, type = STRING
  } else {
    w.float(2, value.float).int(20, 1);                 // f, type = FLOAT
  }
}

/** Serialized ModelProto (IR version 8). */
export function encodeModel(m: OnnxModel): Uint8Array {
  const w = new Writer();
  w.int(1, 8);                                          // ir_version
  w.string(2, 'tfjs-efficient-attention bench');        // producer_name
  w.message(7, (g) => {                                 // graph
    m.nodes.forEach((n, i) => g.message(1, (node) => {  // GraphProto.node
      for (const x of n.inputs) node.string(1, x);
      for (const y of n.outputs) node.string(2, y);
      node.string(3, `${n.opType}_${i}`);
      node.string(4, n.opType);
      for (const [k, v] of Object.entries(n.attributes ?? {})) node.message(5, (a) => writeAttribute(a, k, v));
      if (n.domain) node.string(7, n.domain);
    }));
    g.string(2, m.graphName ?? 'graph');
    for (const v of m.inputs) g.message(11, (x) => writeValueInfo(x, v));
    for (const v of m.outputs) g.message(12, (x) => writeValueInfo(x, v));
  });
  for (const [domain, version] of Object.entries(m.opsets)) {
    w.message(8, (o) => {                               // opset_import
      if (domain) o.string(1, domain);
      o.int(2, version);
    });
  }
  return w.finish();
}

/**
 * One com.microsoft MultiHeadAttention node: query [B, S, H·D], key/value [B, L, H·D] → output [B, S, H·D]
 * (this library's [B, S, H, D] layout, flattened). Dense, scale 1/sqrt(D) unless given.
 */
export function multiHeadAttentionModel(
    p: {batch: number; seqQ: number; seqK: number; heads: number; headDim: number; scale?: number}): Uint8Array {
  const hidden = p.heads * p.headDim;
  const attributes: Record<string, AttributeValue> = {num_heads: p.heads};
  if (p.scale != null) attributes.scale = {float: p.scale};
  return encodeModel({
    nodes: [{opType: 'MultiHeadAttention', domain: 'com.microsoft', inputs: ['query', 'key', 'value'],
             outputs: ['output'], attributes}],
    inputs: [
      {name: 'query', elemType: ElemType.FLOAT, dims: [p.batch, p.seqQ, hidden]},
      {name: 'key', elemType: ElemType.FLOAT, dims: [p.batch, p.seqK, hidden]},
      {name: 'value', elemType: ElemType.FLOAT, dims: [p.batch, p.seqK, hidden]},
    ],
    outputs: [{name: 'output', elemType: ElemType.FLOAT, dims: [p.batch, p.seqQ, hidden]}],
    opsets: {'': 17, 'com.microsoft': 1},
  });
}

/**
 * One com.microsoft GroupQueryAttention node for decoding: query [B, Sq, H·D] and the new tokens' key/value
 * [B, Sq, Hkv·D], a KV cache past_key/past_value [B, Hkv, capacity, D] (BNSH), seqlens_k int32 [B] (total − 1 per
 * batch) and total_sequence_length int32 scalar → output [B, Sq, H·D] and present_key/present_value shaped like the
 * cache (bound to the cache's own buffers, the op writes the new tokens in place). Causal, scale 1/sqrt(D) unless given.
 */
export function groupQueryAttentionModel(p: {batch: number; seqQ: number; capacity: number; heads: number;
                                              kvHeads: number; headDim: number; scale?: number}): Uint8Array {
  const attributes: Record<string, AttributeValue> = {num_heads: p.heads, kv_num_heads: p.kvHeads};
  if (p.scale != null) attributes.scale = {float: p.scale};
  const cache = [p.batch, p.kvHeads, p.capacity, p.headDim];
  const kvHidden = p.kvHeads * p.headDim;
  return encodeModel({
    nodes: [{opType: 'GroupQueryAttention', domain: 'com.microsoft',
             inputs: ['query', 'key', 'value', 'past_key', 'past_value', 'seqlens_k', 'total_sequence_length'],
             outputs: ['output', 'present_key', 'present_value'], attributes}],
    inputs: [
      {name: 'query', elemType: ElemType.FLOAT, dims: [p.batch, p.seqQ, p.heads * p.headDim]},
      {name: 'key', elemType: ElemType.FLOAT, dims: [p.batch, p.seqQ, kvHidden]},
      {name: 'value', elemType: ElemType.FLOAT, dims: [p.batch, p.seqQ, kvHidden]},
      {name: 'past_key', elemType: ElemType.FLOAT, dims: cache},
      {name: 'past_value', elemType: ElemType.FLOAT, dims: cache},
      {name: 'seqlens_k', elemType: ElemType.INT32, dims: [p.batch]},
      {name: 'total_sequence_length', elemType: ElemType.INT32, dims: []},
    ],
    outputs: [
      {name: 'output', elemType: ElemType.FLOAT, dims: [p.batch, p.seqQ, p.heads * p.headDim]},
      {name: 'present_key', elemType: ElemType.FLOAT, dims: cache},
      {name: 'present_value', elemType: ElemType.FLOAT, dims: cache},
    ],
    opsets: {'': 17, 'com.microsoft': 1},
  });
}
