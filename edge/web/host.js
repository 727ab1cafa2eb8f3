// The host page: write or import a quiz, run it from the lobby to the podium, export the results.
import {
  $,
  CHOICE_SHAPES,
  Connection,
  KIND_LABELS,
  countdown,
  fill,
  formatNumber,
  h,
  mediaUrl,
  plainNumber,
  renderLeaderboard,
  renderMedia,
  renderPodium,
  renderResults,
  showView,
  statusBanner,
  takeIdentityToken,
} from "./common.js";

// What this tab hosts: {quiz_id, host_token?, signed_in?, owner?}, owner being the authored quiz that
// "Run this quiz again" starts a session of ({quiz_id, host_token?, signed_in?}).
const HOSTING_KEY = "quizmesh.hosting";
// A signed-in teacher's identity token, handed over by the host application (`/host#identity_token=…`);
// kept apart from the player page's, whose tab may be another user's.
const IDENTITY_KEY = "quizmesh.host_identity_token";
const FINAL_HOST_ERRORS = new Set(["permission_denied", "unauthenticated", "quiz_not_found", "invalid_field"]);
const MAX_CHOICES = 6;

const hosting = {
  quizId: null,
  hostToken: null,
  quiz: null, // the quiz as its host sees it: questions with their correct choices
  state: null,
  results: null,
  board: null,
  shown: null, // the question whose media the question view shows
};

const identityToken = takeIdentityToken(IDENTITY_KEY);

// The application links a signed-in teacher to a quiz or session of theirs (`/host?quiz=CODE`): this
// tab hosts it by sign-in, and runs it again if it is the quiz's own code. Taken out of the address so
// that a reload keeps hosting whatever this tab runs by then.
function takeLinkedQuiz() {
  const params = new URLSearchParams(location.search);
  const linked = params.get("quiz");
  if (!linked || !identityToken) return;
  const signedIn = { quiz_id: linked, signed_in: true };
  sessionStorage.setItem(HOSTING_KEY, JSON.stringify({ ...signedIn, owner: signedIn }));
  params.delete("quiz");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
}

takeLinkedQuiz();

/** The credentials a stored quiz is hosted with: its host credential, and the teacher's sign-in. */
function hostCredential(stored) {
  const credential = {};
  if (stored.host_token) credential.host_token = stored.host_token;
  if (stored.signed_in && identityToken) credential.identity_token = identityToken;
  return credential;
}

const connection = new Connection({
  onOpen: hostIfStored,
  onPush: handlePush,
  onStatus: statusBanner($("#connection")),
});

function showError(message) {
  const banner = $("#host-error");
  banner.textContent = message;
  banner.hidden = !message;
}

async function hostIfStored() {
  const stored = JSON.parse(sessionStorage.getItem(HOSTING_KEY) || "null");
  if (!stored) return;
  try {
    const reply = await connection.request("host_quiz", { quiz_id: stored.quiz_id, ...hostCredential(stored) });
    hosting.quizId = reply.state.quiz_id;
    hosting.hostToken = stored.host_token ?? null;
    hosting.quiz = reply.quiz;
    adoptState(reply.state);
    showError("");
    render();
  } catch (error) {
    if (FINAL_HOST_ERRORS.has(error.code)) {
      sessionStorage.removeItem(HOSTING_KEY);
      showCreate();
      const signIn = error.reason === "invalid_identity" ? " Open the host page from the application again." : "";
      showError(`Could not host the stored quiz: ${error.message}.${signIn}`);
    }
  }
}

function adoptState(state) {
  if (hosting.state && state.server_time_ms < hosting.state.server_time_ms) return;
  hosting.state = state;
}

function handlePush(message) {
  if (message.type === "quiz_state") {
    adoptState(message.state);
    if (message.results) hosting.results = message.results;
  } else if (message.type === "leaderboard_updated") {
    if (hosting.board && message.version <= hosting.board.version) return;
    hosting.board = message;
  } else {
    return;
  }
  render();
}

// --- the quiz editor ---
// The draft holds questions in create_quiz's JSON shape (docs/protocol.md, "Question kinds"); media
// are the files picked or imported for it, by the name questions use, uploaded with the quiz.

const KINDS = Object.keys(KIND_LABELS);
const media = new Map(); // upload name → File

function emptyQuestion(kind = "single_choice") {
  const common = { kind, text: "", time_limit_seconds: 20, points: kind === "poll" ? "none" : "standard" };
  switch (kind) {
    case "multiple_select":
      return { ...common, choices: ["", "", "", ""], correct_choices: [0, 1] };
    case "true_false":
      return { ...common, correct_answer: true };
    case "type_answer":
      return { ...common, accepted_answers: [""], accent_insensitive: false, typo_tolerant: false };
    case "ordering":
      return { ...common, items: ["", "", ""] };
    case "estimate":
      return { ...common, estimate: { min: 0, max: 100, answer: 50, tolerance: 5 } };
    case "poll":
      return { ...common, choices: ["", "", ""] };
    default:
      return { ...common, choices: ["", "", "", ""], correct_choices: [0] };
  }
}
let draft = [emptyQuestion()];

function textInput(value, label, oninput, extra = {}) {
  return h("input", { type: "text", value, maxlength: 500, "aria-label": label, oninput, ...extra });
}

function choiceRows(question, qi) {
  const marksCorrect = question.kind !== "poll";
  return question.choices.map((choice, ci) =>
    h(
      "div",
      { class: `choice-row choice-${ci}` },
      h("span", { class: "shape", text: CHOICE_SHAPES[ci], "aria-hidden": "true" }),
      textInput(choice, `Question ${qi + 1}, choice ${ci + 1}`, (event) => {
        question.choices[ci] = event.target.value;
      }, { class: "choice-input" }),
      marksCorrect
        ? h(
            "label",
            { class: "checkbox" },
            h("input", {
              type: "checkbox",
              checked: question.correct_choices.includes(ci),
              class: "correct-input",
              onchange: (event) => {
                const others = question.correct_choices.filter((c) => c !== ci);
                question.correct_choices = event.target.checked ? [...others, ci].sort() : others;
              },
            }),
            "correct",
          )
        : h("span"),
      question.choices.length > 2
        ? h("button", {
            type: "button",
            class: "icon",
            text: "✕",
            "aria-label": `Remove choice ${ci + 1}`,
            onclick: () => {
              question.choices.splice(ci, 1);
              if (question.correct_choices) {
                question.correct_choices = question.correct_choices
                  .filter((c) => c !== ci)
                  .map((c) => (c > ci ? c - 1 : c));
              }
              if (question.choice_images) question.choice_images.splice(ci, 1);
              renderEditor();
            },
          })
        : h("span"),
    ),
  );
}

/** One entry per line: accepted answers, or items in the right order. */
function linesField(question, key, label) {
  return h(
    "label",
    { class: "stacked" },
    label,
    h("textarea", {
      rows: Math.max(3, question[key].length),
      class: `${key.replace("_", "-")}-input`,
      text: question[key].join("\n"),
      oninput: (event) => {
        question[key] = event.target.value.split("\n").map((line) => line.trim()).filter(Boolean);
      },
    }),
  );
}

function kindFields(question, qi) {
  switch (question.kind) {
    case "true_false":
      return h(
        "label",
        {},
        "The statement is ",
        h(
          "select",
          {
            class: "truth-input",
            onchange: (event) => {
              question.correct_answer = event.target.value === "true";
            },
          },
          h("option", { value: "true", selected: question.correct_answer, text: "true" }),
          h("option", { value: "false", selected: !question.correct_answer, text: "false" }),
        ),
      );
    case "type_answer":
      return [
        linesField(question, "accepted_answers", "Accepted answers, one per line"),
        h(
          "div",
          { class: "row" },
          ...[
            ["accent_insensitive", "Ignore accents"],
            ["typo_tolerant", "Forgive one typo in words of 5+ letters"],
          ].map(([key, text]) =>
            h(
              "label",
              { class: "checkbox" },
              h("input", {
                type: "checkbox",
                checked: question[key],
                onchange: (event) => {
                  question[key] = event.target.checked;
                },
              }),
              text,
            ),
          ),
        ),
      ];
    case "ordering":
      return linesField(question, "items", "Items in the right order, one per line (players see them shuffled)");
    case "estimate":
      return h(
        "div",
        { class: "row" },
        ...[
          ["min", "From"],
          ["max", "to"],
          ["answer", "Answer"],
          ["tolerance", "Correct within ±"],
        ].map(([key, text]) =>
          h(
            "label",
            {},
            `${text} `,
            h("input", {
              type: "number",
              step: "any",
              value: question.estimate[key],
              class: `estimate-${key}`,
              "aria-label": `Question ${qi + 1}, ${text}`,
              onchange: (event) => {
                question.estimate[key] = event.target.value;
              },
            }),
          ),
        ),
      );
    default:
      return [
        ...choiceRows(question, qi),
        question.choices.length < MAX_CHOICES
          ? h("button", {
              type: "button",
              text: "Add a choice",
              onclick: () => {
                question.choices.push("");
                if (question.choice_images) question.choice_images.push("");
                renderEditor();
              },
            })
          : null,
      ];
  }
}

function mediaField(question, key, label, accept) {
  const name = question[key];
  return h(
    "label",
    { class: "media-pick" },
    `${label} `,
    h("input", {
      type: "file",
      accept,
      class: `${key}-file`,
      onchange: (event) => {
        const file = event.target.files[0];
        if (!file) return;
        media.set(file.name, file);
        question[key] = file.name;
        renderEditor();
      },
    }),
    name
      ? h(
          "span",
          { class: "media-name" },
          name.length === 64 ? "stored" : name,
          h("button", {
            type: "button",
            class: "icon",
            text: "✕",
            "aria-label": `Remove the ${label.toLowerCase()}`,
            onclick: () => {
              delete question[key];
              renderEditor();
            },
          }),
        )
      : null,
  );
}

function renderEditor() {
  fill(
    $("#questions"),
    draft.map((question, qi) =>
      h(
        "fieldset",
        { class: `question-editor kind-${question.kind}` },
        h("legend", { text: `Question ${qi + 1}` }),
        h(
          "label",
          {},
          "Kind ",
          h(
            "select",
            {
              class: "kind-input",
              onchange: (event) => {
                draft[qi] = { ...emptyQuestion(event.target.value), text: question.text };
                renderEditor();
              },
            },
            KINDS.map((kind) => h("option", { value: kind, selected: question.kind === kind, text: KIND_LABELS[kind] })),
          ),
        ),
        h("textarea", {
          rows: 2,
          maxlength: 500,
          class: "question-input",
          "aria-label": `Question ${qi + 1} text`,
          placeholder: "The question",
          oninput: (event) => {
            question.text = event.target.value;
          },
          text: question.text,
        }),
        kindFields(question, qi),
        h(
          "div",
          { class: "row" },
          mediaField(question, "image", "Picture", "image/png,image/jpeg,image/gif,image/webp"),
          mediaField(question, "audio", "Audio", "audio/mpeg,audio/ogg,audio/wav,audio/mp4"),
        ),
        h(
          "div",
          { class: "row" },
          h(
            "label",
            {},
            "Seconds ",
            h("input", {
              type: "number",
              min: 5,
              max: 120,
              value: question.time_limit_seconds,
              class: "seconds-input",
              onchange: (event) => {
                question.time_limit_seconds = Number(event.target.value);
              },
            }),
          ),
          question.kind === "poll"
            ? null
            : h(
                "label",
                {},
                "Points ",
                h(
                  "select",
                  {
                    onchange: (event) => {
                      question.points = event.target.value;
                    },
                  },
                  ["standard", "double", "none"].map((mode) =>
                    h("option", { value: mode, selected: question.points === mode, text: mode }),
                  ),
                ),
              ),
          draft.length > 1
            ? h("button", {
                type: "button",
                class: "danger",
                text: "Remove question",
                onclick: () => {
                  draft.splice(qi, 1);
                  renderEditor();
                },
              })
            : null,
        ),
      ),
    ),
  );
}

/** A form of the quiz document (or create_quiz's JSON) and the media files it names. */
function upload(documentField, document, documentName) {
  const form = new FormData();
  form.append(documentField, document, documentName);
  for (const [name, file] of media) form.append("media", file, name);
  return form;
}

async function postForm(url, form, headers = {}) {
  const response = await fetch(url, { method: "POST", body: form, headers, cache: "no-store" });
  if (!response.ok) throw new Error(await response.text());
  return response.json();
}

// The document (JSON, CSV or XLSX) and any pictures and clips it names are picked together. The edge
// reads the document and checks it against the rules; a bad row comes back with its number and why.
$("#import-file").addEventListener("change", async (event) => {
  const files = [...event.target.files];
  event.target.value = "";
  const document = files.find((file) => /\.(json|csv|xlsx)$/i.test(file.name));
  if (!document) {
    $("#create-error").textContent = "Pick a .json, .csv or .xlsx file with the questions (and their media files).";
    return;
  }
  for (const file of files) if (file !== document) media.set(file.name, file);
  try {
    const imported = await postForm("/quizzes/import", upload("document", document, document.name));
    draft = imported.questions;
    if (imported.title && !$("#quiz-title-input").value) $("#quiz-title-input").value = imported.title;
    $("#import-status").textContent =
      `Imported ${draft.length} question${draft.length === 1 ? "" : "s"} from ${document.name}`;
    $("#create-error").textContent = "";
    renderEditor();
  } catch (error) {
    $("#import-status").textContent = "";
    $("#create-error").textContent = `Could not import ${document.name}: ${error.message}`;
  }
});

$("#add-question").addEventListener("click", () => {
  draft.push(emptyQuestion($("#new-kind").value));
  renderEditor();
});

/** The draft as create_quiz takes it; blank choices are left out and correct indices follow them. */
function draftQuestions() {
  return draft.map((q) => {
    if (!q.choices || q.kind === "true_false") return { ...q, text: q.text.trim() };
    const kept = [];
    const correct = [];
    const images = [];
    q.choices.forEach((choice, i) => {
      if (!choice.trim()) return;
      if (q.correct_choices?.includes(i)) correct.push(kept.length);
      kept.push(choice.trim());
      images.push(q.choice_images?.[i] ?? "");
    });
    const question = { ...q, text: q.text.trim(), choices: kept };
    if (q.correct_choices) question.correct_choices = correct;
    if (q.choice_images) question.choice_images = images;
    return question;
  });
}

$("#create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#create-button");
  button.disabled = true;
  $("#create-error").textContent = "";
  try {
    const quiz = {
      title: $("#quiz-title-input").value.trim(),
      questions: draftQuestions(),
      allow_late_join: $("#late-join").checked,
    };
    const body = new Blob([JSON.stringify(quiz)], { type: "application/json" });
    // Signed in, the quiz is the teacher's: they host it, and run it again, by signing in.
    const author = identityToken ? { Authorization: `Bearer ${identityToken}` } : {};
    const created = await postForm("/quizzes", upload("quiz", body, "quiz.json"), author);
    // The quiz's own ID and first credentials stay with every later session: they own the quiz, which
    // "Run this quiz again" needs.
    const owner = { quiz_id: created.quiz.quiz_id, host_token: created.host_token, signed_in: Boolean(identityToken) };
    sessionStorage.setItem(HOSTING_KEY, JSON.stringify({ ...owner, owner }));
    hosting.board = null;
    hosting.results = null;
    hosting.state = null;
    await hostIfStored();
  } catch (error) {
    $("#create-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
});

function showCreate() {
  Object.assign(hosting, { quizId: null, hostToken: null, quiz: null, state: null, results: null, board: null });
  $("#side").hidden = true;
  fill($("#quiz-title"));
  fill($("#quiz-code-small"));
  renderEditor();
  showView("create");
}

// --- running the quiz ---

// Actions a host may repeat safely: starting, ending and visibility are idempotent, and closing and
// opening name their question, so a repeat of one that took effect (its reply lost when a service
// restarted) succeeds without closing or opening another.
const REPEATABLE = new Set(["start_quiz", "close_question", "next_question", "end_quiz", "set_leaderboard_visibility"]);

async function act(type, fields = {}) {
  showError("");
  for (let attempt = 0; ; attempt += 1) {
    try {
      const reply = await connection.request(type, fields);
      if (reply.state) adoptState(reply.state);
      if (reply.results) hosting.results = reply.results;
      render();
      return;
    } catch (error) {
      if (!REPEATABLE.has(type) || !(error.retryable || error.code === "disconnected") || attempt >= 5) {
        showError(error.message || error.code);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
    }
  }
}

$("#start-button").addEventListener("click", () => act("start_quiz"));
$("#close-button").addEventListener("click", () =>
  act("close_question", { question_index: hosting.state.question_index }),
);
$("#next-button").addEventListener("click", () =>
  act("next_question", { question_index: hosting.state.question_index + 1 }),
);
$("#end-button").addEventListener("click", () => act("end_quiz"));
$("#board-toggle").addEventListener("click", () =>
  act("set_leaderboard_visibility", { visible: !hosting.state.leaderboard_visible }),
);
/** A new session of the owner's quiz: signed in over the socket (start_session), else with the quiz's
 * first host credential (POST /quizzes/{quiz_id}/sessions). */
async function startSession(owner) {
  if (owner.signed_in && identityToken) {
    return connection.request("start_session", { quiz_id: owner.quiz_id, identity_token: identityToken });
  }
  const response = await fetch(`/quizzes/${encodeURIComponent(owner.quiz_id)}/sessions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${owner.host_token}` },
    cache: "no-store",
  });
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  return response.json();
}

// A new session of the same quiz: a new join code, in the lobby.
$("#run-again-button").addEventListener("click", async () => {
  showError("");
  const owner = JSON.parse(sessionStorage.getItem(HOSTING_KEY) || "null")?.owner;
  if (!owner) return;
  try {
    const started = await startSession(owner);
    const session = { quiz_id: started.session.session_id, host_token: started.host_token };
    sessionStorage.setItem(HOSTING_KEY, JSON.stringify({ ...session, signed_in: owner.signed_in, owner }));
    hosting.board = null;
    hosting.results = null;
    hosting.state = null;
    await hostIfStored();
  } catch (error) {
    showError(`Could not run the quiz again: ${error.message}`);
  }
});

$("#new-quiz-button").addEventListener("click", () => {
  sessionStorage.removeItem(HOSTING_KEY);
  showCreate();
});

/** What proves the host to the export: the session's host credential, or the teacher's sign-in (a
 * session hosted by sign-in from a link has no host credential in this tab). */
function exportCredential() {
  const stored = JSON.parse(sessionStorage.getItem(HOSTING_KEY) || "{}");
  return hosting.hostToken || (stored.signed_in ? identityToken : null);
}

// The credential goes in a header, never in a URL, so the download is a fetch turned into a file.
$("#csv-button").addEventListener("click", async () => {
  showError("");
  try {
    const response = await fetch(`/quizzes/${encodeURIComponent(hosting.quizId)}/results.csv`, {
      headers: { Authorization: `Bearer ${exportCredential()}` },
      cache: "no-store",
    });
    if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `quizmesh-${hosting.quizId}-results.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (error) {
    showError(`Could not download the results: ${error.message}`);
  }
});

// A kick takes two clicks within a few seconds; the first arms it. Kept by player, since the board (and
// its buttons) is redrawn with every leaderboard update.
const KICK_CONFIRM_MS = 4000;
const armedKicks = new Map(); // player_id → when the arming expires (Date.now() ms)

function kickButton(entry) {
  const armed = () => (armedKicks.get(entry.player_id) ?? 0) > Date.now();
  const button = h("button", {
    type: "button",
    class: "icon kick",
    text: armed() ? "Sure?" : "Kick",
    "aria-label": `Remove ${entry.nickname} from the quiz`,
    onclick: () => {
      if (!armed()) {
        armedKicks.set(entry.player_id, Date.now() + KICK_CONFIRM_MS);
        button.textContent = "Sure?";
        setTimeout(() => {
          if (button.isConnected && !armed()) button.textContent = "Kick";
        }, KICK_CONFIRM_MS);
        return;
      }
      armedKicks.delete(entry.player_id);
      button.disabled = true;
      act("kick_player", { player_id: entry.player_id });
    },
  });
  return button;
}

let timer = null;

function render() {
  const { state } = hosting;
  if (!state) return;
  $("#quiz-title").textContent = state.title;
  $("#quiz-code-small").textContent = `ID ${state.quiz_id}`;
  $("#side").hidden = false;
  clearInterval(timer);
  timer = null;
  switch (state.phase) {
    case "lobby":
      $("#join-url").textContent = `${location.origin}/`;
      $("#quiz-code").textContent = state.quiz_id;
      $("#lobby-count").textContent = joinedCount() === 1 ? "1 player joined" : `${joinedCount()} players joined`;
      showView("lobby");
      break;
    case "question_open":
      renderQuestion(state);
      showView("question");
      break;
    case "question_closed":
      renderClosed(state);
      showView("results");
      break;
    case "ended":
      if (hosting.board) renderPodium($("#podium"), hosting.board.top.slice(0, 3));
      showView("ended");
      break;
    default:
      break;
  }
  renderControls(state);
  renderBoard(state);
}

// Joins change no quiz state that is pushed (that would be a broadcast per join); the coalesced
// leaderboard, which lists every player, carries the live count instead.
function joinedCount() {
  return hosting.board?.player_count ?? hosting.state.participant_count;
}

function questionHead(state, prefix) {
  return `${prefix}Question ${state.question.index + 1} of ${state.question_count}`;
}

function renderQuestion(state) {
  const question = state.question;
  const kind = question.kind || "single_choice";
  $("#question-number").textContent = questionHead(state, "");
  $("#question-kind").textContent = KIND_LABELS[kind] || "";
  $("#question-points").textContent = { double: "Double points", none: "No points" }[question.points] || "";
  $("#question-points").hidden = question.points === "standard" || kind === "poll";
  $("#question-text").textContent = question.text;
  if (hosting.shown !== `${state.quiz_id}:${question.index}`) {
    // Built once per question: a leaderboard push must not restart the clip playing.
    hosting.shown = `${state.quiz_id}:${question.index}`;
    renderMedia($("#question-media"), question);
  }
  let shown = question.choices.map((text, i) =>
    h(
      "li",
      { class: `choice choice-${i}` },
      h("span", { class: "shape", text: CHOICE_SHAPES[i], "aria-hidden": "true" }),
      question.choice_images?.[i]
        ? h("img", { class: "choice-image", src: mediaUrl(question.choice_images[i]), alt: "" })
        : null,
      h("span", { class: "text", text }),
    ),
  );
  if (kind === "ordering") {
    shown = question.items.map((text, p) => h("li", { class: `choice choice-${p % 6}` }, h("span", { class: "text", text })));
  } else if (kind === "estimate") {
    const range = `A number from ${plainNumber(question.estimate.min)} to ${plainNumber(question.estimate.max)}`;
    shown = [h("li", { class: "choice choice-1" }, h("span", { class: "text", text: range }))];
  } else if (kind === "type_answer") {
    shown = [h("li", { class: "choice choice-3" }, h("span", { class: "text", text: "Players type their answer" }))];
  }
  fill($("#question-choices"), shown);
  const tick = () => {
    const left = countdown(question, connection.clock);
    $("#countdown").textContent = String(left.seconds);
    $("#timer-bar").style.setProperty("--left", String(left.fraction));
  };
  tick();
  timer = setInterval(tick, 200);
}

function renderClosed(state) {
  const question = state.question;
  $("#results-number").textContent = questionHead(state, "Results — ");
  $("#results-question").textContent = question.text;
  const results = hosting.results?.question_index === question.index ? hosting.results : null;
  if (results) renderResults($("#results-counts"), question, results);
  else fill($("#results-counts"));
}

function renderControls(state) {
  const phase = state.phase;
  const more = state.question_index + 1 < state.question_count;
  $("#start-button").hidden = phase !== "lobby";
  $("#close-button").hidden = phase !== "question_open";
  $("#next-button").hidden = phase !== "question_closed" || !more;
  $("#end-button").hidden = phase === "ended";
  $("#end-button").textContent = phase === "question_closed" && !more ? "Finish quiz" : "End quiz";
  $("#end-button").classList.toggle("danger", more || phase !== "question_closed");
  $("#end-button").classList.toggle("primary", !more && phase === "question_closed");
  $("#board-toggle").hidden = phase === "ended";
  $("#board-toggle").textContent = state.leaderboard_visible
    ? "Hide leaderboard from players"
    : "Show leaderboard to players";
  $("#new-quiz-button").hidden = phase !== "ended";
  $("#csv-button").hidden = !exportCredential();
  $("#run-again-button").hidden = phase !== "ended" || !JSON.parse(sessionStorage.getItem(HOSTING_KEY) || "{}").owner;
}

function renderBoard(state) {
  const board = hosting.board;
  const entries = board?.top ?? [];
  $("#player-count").textContent = board ? `(${formatNumber(board.player_count)} players)` : "";
  $("#board-empty").hidden = entries.length > 0;
  renderLeaderboard($("#board-list"), entries, {
    action: state.phase === "ended" ? null : kickButton,
  });
}

// --- start ---

$("#signed-in").hidden = !identityToken;

if (sessionStorage.getItem(HOSTING_KEY)) showView("resuming");
else showCreate();
connection.start();
