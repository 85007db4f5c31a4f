// Gorgon's page: sends a prompt over the WebSocket stream, shows the answer as it grows, draws each
// step's candidate tree to the right of the last (accepted nodes flash green, rejected ones turn red and
// fade), and keeps a tokens/s meter with the speedup over plain decoding measured at server start.

const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const DX = 78; // px per depth column
const DY = 26; // px per row
const KEEP_STEPS = 300; // older steps are removed from the DOM

let plainSpeed = null;

async function init() {
  const info = await (await fetch("/info")).json();
  $("#model").textContent = `${info.model}`;
  for (const m of info.methods) {
    const opt = new Option(m, m, m === info.default_method, m === info.default_method);
    $("#method").append(opt);
  }
  plainSpeed = info.plain_tokens_per_s;
  if (plainSpeed) $("#plain").textContent = `(plain: ${plainSpeed.toFixed(1)} tok/s)`;
  $("#form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
}

// ---------------------------------------------------------------------------------------- tree

class TreeView {
  constructor(svg) {
    this.svg = svg;
    this.clear();
  }

  clear() {
    this.svg.replaceChildren();
    this.root = document.createElementNS(SVG, "g"); // shifted down as rows above the path appear
    this.svg.append(this.root);
    this.cursor = -1; // column of the last committed token drawn
    this.steps = [];
    this.minRow = -2;
    this.maxRow = 2;
    this.columns = 4;
    this.resize();
  }

  resize() {
    this.svg.setAttribute("width", String((this.columns + 1) * DX));
    this.svg.setAttribute("height", String((this.maxRow - this.minRow + 1) * DY + 8));
    this.root.setAttribute("transform", `translate(0,${-this.minRow * DY + DY / 2 + 4})`);
  }

  // Rows: leaves in visiting order (accepted child first) take rows 0, 1, -1, 2, -2, ...; a node sits
  // on its first child's row, so the accepted path stays on row 0 and rejected branches fan out.
  layout(nodes) {
    const kids = new Map();
    for (const n of nodes) if (n.parent >= 0) (kids.get(n.parent) ?? kids.set(n.parent, []).get(n.parent)).push(n);
    for (const list of kids.values()) list.sort((a, b) => Number(b.accepted) - Number(a.accepted));
    const row = new Map();
    let leaf = 0;
    const visit = (n) => {
      const children = kids.get(n.id) ?? [];
      if (!children.length) {
        const k = leaf++;
        row.set(n.id, k === 0 ? 0 : (k % 2 ? 1 : -1) * Math.ceil(k / 2));
        return;
      }
      children.forEach(visit);
      row.set(n.id, row.get(children[0].id));
    };
    nodes.filter((n) => n.parent < 0).forEach(visit);
    return row;
  }

  // Each step's tree takes its own columns to the right of the last; the bonus token (the model's own
  // token after the accepted path) starts the next step's columns, where it is that step's root.
  add(step) {
    const chain = step.kind === "chain";
    const base = chain ? this.cursor + 1 : this.cursor;
    const nodes = chain ? step.nodes.map((n) => ({ ...n, parent: n.id - 1 })) : step.nodes;
    const drafted = nodes.filter((n) => !n.bonus);
    const deepest = Math.max(0, ...drafted.map((n) => n.depth));
    const col = (n) => base + (n.bonus && !chain ? Math.max(n.depth, deepest + 1) : n.depth);
    const rows = this.layout(nodes);
    const pos = new Map(nodes.map((n) => [n.id, { x: col(n) * DX + DX / 2, y: (rows.get(n.id) ?? 0) * DY }]));
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "step");
    for (const n of nodes) {
      const a = pos.get(n.parent), b = pos.get(n.id);
      if (!a) continue;
      const edge = document.createElementNS(SVG, "path");
      edge.setAttribute("d", `M${a.x + 30},${a.y} C${a.x + 45},${a.y} ${b.x - 45},${b.y} ${b.x - 30},${b.y}`);
      edge.setAttribute("class", `edge ${n.accepted ? "accepted" : "rejected"}`);
      g.append(edge);
    }
    for (const n of nodes) {
      if (!chain && n.parent < 0 && this.steps.length) continue; // drawn last step, as its bonus token
      g.append(this.node(n, pos.get(n.id)));
    }
    this.root.append(g);
    this.steps.push(g);
    if (this.steps.length > KEEP_STEPS) this.steps.shift().remove();
    const used = [...rows.values()];
    this.minRow = Math.min(this.minRow, ...used);
    this.maxRow = Math.max(this.maxRow, ...used);
    this.cursor = Math.max(...nodes.filter((n) => n.accepted).map(col));
    this.columns = Math.max(this.columns, ...nodes.map(col));
    this.resize();
    const box = this.svg.parentElement;
    box.scrollLeft = box.scrollWidth;
  }

  node(n, p) {
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", `node ${n.accepted ? "accepted" : "rejected"}${n.bonus ? " bonus" : ""}`);
    g.setAttribute("transform", `translate(${p.x},${p.y})`);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("x", "-30");
    rect.setAttribute("y", "-10");
    rect.setAttribute("width", "60");
    rect.setAttribute("height", "20");
    const text = document.createElementNS(SVG, "text");
    text.textContent = shown(n.token);
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${JSON.stringify(n.token)} (depth ${n.depth}, ${n.accepted ? "accepted" : "rejected"})`;
    g.append(rect, text, title);
    return g;
  }
}

function shown(token) {
  const visible = token.replaceAll("\n", "↵").replaceAll(" ", "·") || "∅";
  return visible.length > 8 ? `${visible.slice(0, 7)}…` : visible;
}

// ------------------------------------------------------------------------------------ streaming

const tree = new TreeView($("#tree"));

function setMeter(tokensPerS, speedup) {
  $("#tps").textContent = tokensPerS.toFixed(1);
  const scale = Math.max(3 * (plainSpeed || tokensPerS || 1), tokensPerS);
  $("#tps-bar").style.width = `${(100 * tokensPerS) / scale}%`;
  if (plainSpeed) $("#plain-mark").style.left = `${(100 * plainSpeed) / scale}%`;
  $("#speedup").textContent = speedup ? `${speedup.toFixed(2)}×` : "–";
}

function generate() {
  const answer = $("#answer");
  answer.textContent = "";
  answer.classList.remove("error");
  delete answer.dataset.done;
  $("#stats").textContent = "";
  tree.clear();
  setMeter(0, null);
  $("#go").disabled = true;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/v1/generate_stream`);
  ws.onopen = () =>
    ws.send(
      JSON.stringify({
        messages: [{ role: "user", content: $("#prompt").value }],
        method: $("#method").value,
        max_tokens: Number($("#max-tokens").value),
        temperature: Number($("#temperature").value),
      }),
    );
  ws.onmessage = (message) => {
    const msg = JSON.parse(message.data);
    if (msg.type === "step") {
      answer.textContent += msg.text;
      tree.add(msg.tree_debug);
      setMeter(msg.tree_debug.tokens_per_s, msg.tree_debug.speedup);
    } else if (msg.type === "done") {
      const s = msg.speculative;
      const rates = s.acceptance_rate_per_position.map((r) => r.toFixed(2)).join(" ");
      $("#stats").textContent =
        `${s.method}: ${msg.usage.completion_tokens} tokens in ${s.steps} steps, ` +
        `τ ${s.tau.toFixed(2)} tokens/step${rates ? `, acceptance per position ${rates}` : ""}, finish: ${msg.finish_reason}`;
      answer.dataset.done = "true";
    } else if (msg.type === "error") {
      answer.classList.add("error");
      answer.textContent = msg.error.message;
    }
  };
  ws.onclose = () => {
    $("#go").disabled = false;
  };
}

init();
