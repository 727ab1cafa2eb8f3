// The host page: write or import a quiz, run it from the lobby to the podium, export the results.
import {
  $,
  CHOICE_SHAPES,
  Connection,
  countdown,
  fill,
  formatNumber,
  h,
  renderChoiceCounts,
  renderLeaderboard,
  renderPodium,
  showView,
  statusBanner,
} from "./common.js";

const HOSTING_KEY = "quizmesh.hosting";
const FINAL_HOST_ERRORS = new Set(["permission_denied", "unauthenticated", "quiz_not_found", "invalid_field"]);
const MAX_CHOICES = 6;

const hosting = {
  quizId: null,
  hostToken: null,
  quiz: null, // the quiz as its host sees it: questions with their correct choices
  state: null,
  results: null,
  board: null,
};

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
    const reply = await connection.request("host_quiz", { quiz_id: stored.quiz_id, host_token: stored.host_token });
    hosting.quizId = reply.state.quiz_id;
    hosting.hostToken = stored.host_token;
    hosting.quiz = reply.quiz;
    adoptState(reply.state);
    showError("");
    render();
  } catch (error) {
    if (FINAL_HOST_ERRORS.has(error.code)) {
      sessionStorage.removeItem(HOSTING_KEY);
      showCreate();
      showError(`Could not host the stored quiz: ${error.message}`);
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

const emptyQuestion = () => ({
  text: "",
  choices: ["", "", "", ""],
  correct_choices: [0],
  time_limit_seconds: 20,
  points: "standard",
});
let draft = [emptyQuestion()];

function renderEditor() {
  fill(
    $("#questions"),
    draft.map((question, qi) => {
      const choiceRows = question.choices.map((choice, ci) =>
        h(
          "div",
          { class: `choice-row choice-${ci}` },
          h("span", { class: "shape", text: CHOICE_SHAPES[ci], "aria-hidden": "true" }),
          h("input", {
            type: "text",
            value: choice,
            maxlength: 500,
            "aria-label": `Question ${qi + 1}, choice ${ci + 1}`,
            class: "choice-input",
            oninput: (event) => {
              question.choices[ci] = event.target.value;
            },
          }),
          h(
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
          ),
          question.choices.length > 2
            ? h("button", {
                type: "button",
                class: "icon",
                text: "✕",
                "aria-label": `Remove choice ${ci + 1}`,
                onclick: () => {
                  question.choices.splice(ci, 1);
                  question.correct_choices = question.correct_choices
                    .filter((c) => c !== ci)
                    .map((c) => (c > ci ? c - 1 : c));
                  renderEditor();
                },
              })
            : null,
        ),
      );
      return h(
        "fieldset",
        { class: "question-editor" },
        h("legend", { text: `Question ${qi + 1}` }),
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
        choiceRows,
        h(
          "div",
          { class: "row" },
          question.choices.length < MAX_CHOICES
            ? h("button", {
                type: "button",
                text: "Add a choice",
                onclick: () => {
                  question.choices.push("");
                  renderEditor();
                },
              })
            : null,
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
          h(
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
      );
    }),
  );
}

/** Checks an imported file: a list of questions as create_quiz takes them, or {title?, questions}. */
function parseImport(text) {
  const data = JSON.parse(text);
  const questions = Array.isArray(data) ? data : data?.questions;
  if (!Array.isArray(questions) || questions.length === 0) {
    throw new Error("expected a JSON list of questions, or an object with a 'questions' list");
  }
  const parsed = questions.map((q, i) => {
    const where = `question ${i + 1}`;
    if (typeof q?.text !== "string") throw new Error(`${where}: 'text' must be a string`);
    if (!Array.isArray(q.choices) || !q.choices.every((c) => typeof c === "string")) {
      throw new Error(`${where}: 'choices' must be a list of strings`);
    }
    if (!Array.isArray(q.correct_choices) || !q.correct_choices.every(Number.isInteger)) {
      throw new Error(`${where}: 'correct_choices' must be a list of choice indices`);
    }
    return {
      text: q.text,
      choices: [...q.choices],
      correct_choices: [...q.correct_choices],
      time_limit_seconds: Number.isInteger(q.time_limit_seconds) ? q.time_limit_seconds : 20,
      points: q.points ?? "standard",
    };
  });
  return { title: typeof data?.title === "string" ? data.title : null, questions: parsed };
}

$("#import-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    const imported = parseImport(await file.text());
    draft = imported.questions;
    if (imported.title && !$("#quiz-title-input").value) $("#quiz-title-input").value = imported.title;
    $("#import-status").textContent = `Imported ${draft.length} question${draft.length === 1 ? "" : "s"} from ${file.name}`;
    $("#create-error").textContent = "";
    renderEditor();
  } catch (error) {
    $("#import-status").textContent = "";
    $("#create-error").textContent = `Could not import ${file.name}: ${error.message}`;
  } finally {
    event.target.value = "";
  }
});

$("#add-question").addEventListener("click", () => {
  draft.push(emptyQuestion());
  renderEditor();
});

/** The draft as create_quiz takes it; blank choices are left out and correct indices follow them. */
function draftQuestions() {
  return draft.map((q) => {
    const kept = [];
    const correct = [];
    q.choices.forEach((choice, i) => {
      if (!choice.trim()) return;
      if (q.correct_choices.includes(i)) correct.push(kept.length);
      kept.push(choice.trim());
    });
    return {
      text: q.text.trim(),
      choices: kept,
      correct_choices: correct,
      time_limit_seconds: q.time_limit_seconds,
      points: q.points,
    };
  });
}

$("#create-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#create-button");
  button.disabled = true;
  $("#create-error").textContent = "";
  try {
    const created = await connection.request("create_quiz", {
      title: $("#quiz-title-input").value.trim(),
      questions: draftQuestions(),
      allow_late_join: $("#late-join").checked,
    });
    sessionStorage.setItem(
      HOSTING_KEY,
      JSON.stringify({ quiz_id: created.quiz.quiz_id, host_token: created.host_token }),
    );
    hosting.board = null;
    hosting.results = null;
    hosting.state = null;
    await hostIfStored();
  } catch (error) {
    $("#create-error").textContent =
      error.code === "disconnected" ? "Not connected yet — try again in a moment." : error.message;
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
$("#new-quiz-button").addEventListener("click", () => {
  sessionStorage.removeItem(HOSTING_KEY);
  showCreate();
});

// The host token goes in a header, never in a URL, so the download is a fetch turned into a file.
$("#csv-button").addEventListener("click", async () => {
  showError("");
  try {
    const response = await fetch(`/quizzes/${encodeURIComponent(hosting.quizId)}/results.csv`, {
      headers: { Authorization: `Bearer ${hosting.hostToken}` },
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
      renderResults(state);
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
  $("#question-number").textContent = questionHead(state, "");
  $("#question-points").textContent = { double: "Double points", none: "No points" }[question.points] || "";
  $("#question-points").hidden = question.points === "standard";
  $("#question-text").textContent = question.text;
  fill(
    $("#question-choices"),
    question.choices.map((text, i) =>
      h(
        "li",
        { class: `choice choice-${i}` },
        h("span", { class: "shape", text: CHOICE_SHAPES[i], "aria-hidden": "true" }),
        h("span", { class: "text", text }),
      ),
    ),
  );
  const tick = () => {
    const left = countdown(question, connection.clock);
    $("#countdown").textContent = String(left.seconds);
    $("#timer-bar").style.setProperty("--left", String(left.fraction));
  };
  tick();
  timer = setInterval(tick, 200);
}

function renderResults(state) {
  const question = state.question;
  $("#results-number").textContent = questionHead(state, "Results — ");
  $("#results-question").textContent = question.text;
  const results = hosting.results?.question_index === question.index ? hosting.results : null;
  if (results) renderChoiceCounts($("#results-counts"), question.choices, results);
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

if (sessionStorage.getItem(HOSTING_KEY)) showView("resuming");
else showCreate();
connection.start();
