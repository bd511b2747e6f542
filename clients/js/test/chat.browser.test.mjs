// The chat example in real Chromium (driven by playwright-core, never a downloaded browser):
// two pages in one room through two gateways of a local cluster (2 NATS nodes with
// JetStream, a control replica, 2 gateways serving the page). A message typed in one shows
// in the other, presence shows both, typing shows; then one page's gateway is killed while
// messages are sent, and once it is back that page shows every message, in order, once.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";

import { Cluster } from "./cluster.mjs";
import { ROOT, mintToken, startDev, tempDir, waitFor } from "./harness.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = path.join(ROOT, "target/browser-tests");
const CONFIG = readFileSync(path.join(ROOT, "examples/chat/switchboard.toml"), "utf8");
// The launch options TOOLING.md lists as working here (headless, no sandbox as root).
const LAUNCH = {
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};

async function chromium() {
  if (!existsSync(CHROMIUM)) throw new Error(`chromium is missing at ${CHROMIUM}: run tests/tools/install-deps.sh (apt-get install chromium)`);
  try {
    return (await import("playwright-core")).chromium;
  } catch {
    throw new Error("playwright-core is missing: run `npm ci` in clients/js (tests/tools/install-deps.sh does)");
  }
}

/** The texts of the chat messages a page shows, in order (notices left out). */
const messages = (page) => page.$$eval("#messages li:not(.notice)", (lis) => lis.map((li) => `${li.querySelector("b").textContent}: ${li.querySelector(".text").textContent}`));
const presence = (page) => page.$eval("#presence", (ul) => ul.textContent);
const status = (page) => page.$eval("#status", (s) => s.dataset.state);

async function say(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

test("two browsers chat through two gateways, and one that lost its gateway catches up in order, once", { timeout: 120000 }, async (t) => {
  const browserType = await chromium();
  const cluster = await Cluster.start({ natsNodes: 2, config: CONFIG });
  t.after(() => cluster.stop());
  const [gwA, gwB] = [await cluster.gateway("gwa", 0), await cluster.gateway("gwb", 1)];

  // Nothing dev-only on `switchboard gateway`: no token minting.
  assert.equal((await fetch(`${gwA.http}/demo/token?user=eve`)).status, 404);

  const context = await browserType.launchPersistentContext(tempDir("sb-chromium-"), LAUNCH);
  t.after(() => context.close());
  const errors = [];
  const open = async (gw, user) => {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(`${user}: ${e.message}`));
    const token = mintToken(user, { info: { name: user } });
    await page.goto(`${gw.http}/chat/?room=browser&minReconnectDelay=100&maxReconnectDelay=500#token=${token}`);
    await waitFor(`${user}'s page to connect`, async () => (await status(page)) === "connected");
    return page;
  };
  const alice = await open(gwA, "alice");
  const bob = await open(gwB, "bob");
  try {
    // Presence shows both, on both pages (the lists start with `presence` and follow join pushes).
    for (const [page, name] of [[alice, "alice"], [bob, "bob"]]) {
      let list = "";
      await waitFor(() => `both in ${name}'s presence list (it shows ${JSON.stringify(list)})`, async () => /alice/.test(list = await presence(page)) && /bob/.test(list));
    }

    await alice.fill("#text", "typing…");
    await waitFor("bob to see alice typing", async () => /alice is typing/.test(await bob.$eval("#typing", (d) => d.textContent)));
    await alice.fill("#text", "");
    await say(alice, "hello from alice");
    await waitFor("alice's message at bob", async () => (await messages(bob)).includes("alice: hello from alice"));
    await say(bob, "hi alice");
    await waitFor("bob's message at alice", async () => (await messages(alice)).includes("bob: hi alice"));

    // Bob's gateway dies; alice goes on talking.
    await cluster.killGateway(gwB);
    await waitFor("bob's page to notice", async () => (await status(bob)) !== "connected");
    for (const n of [1, 2, 3]) await say(alice, `while you were away ${n}`);
    await waitFor("alice to see her messages stored", async () => (await messages(alice)).length === 5);
    await cluster.restartGateway(gwB);
    await waitFor("bob's page to reconnect", async () => (await status(bob)) === "connected");
    await say(alice, "welcome back");
    const expected = [
      "alice: hello from alice",
      "bob: hi alice",
      "alice: while you were away 1",
      "alice: while you were away 2",
      "alice: while you were away 3",
      "alice: welcome back",
    ];
    for (const page of [alice, bob]) {
      await waitFor("every message on both pages", async () => (await messages(page)).length >= expected.length);
    }
    assert.deepEqual(await messages(bob), expected, "every message, in order, once");
    assert.deepEqual(await messages(alice), expected);
    // The missed ones came by recovery (not a history reload), each delivered once, in order.
    const { subscribed, deliveries } = await bob.evaluate(() => ({ subscribed: window.chat.subscribed, deliveries: window.chat.deliveries }));
    assert.equal(subscribed.length, 2, JSON.stringify(subscribed));
    assert.deepEqual([subscribed[1].resumed, subscribed[1].recovered], [true, true]);
    assert.ok(deliveries.every((o, i) => i === 0 || o > deliveries[i - 1]), `deliveries in offset order, once: ${deliveries}`);
    await waitFor("both in bob's presence list again", async () => /alice/.test(await presence(bob)) && /bob/.test(await presence(bob)));

    mkdirSync(ARTIFACTS, { recursive: true });
    for (const [page, name] of [[alice, "alice"], [bob, "bob"]]) {
      const file = path.join(ARTIFACTS, `chat-${name}.png`);
      await page.screenshot({ path: file });
      const png = readFileSync(file);
      assert.ok(statSync(file).size > 1000, `${file} is a screenshot`);
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], `${file} is a PNG`);
    }
    assert.deepEqual(errors, [], "no script errors on the pages");
  } catch (e) {
    mkdirSync(ARTIFACTS, { recursive: true });
    await bob.screenshot({ path: path.join(ARTIFACTS, "chat-bob-failed.png") }).catch(() => {});
    e.message += `\n${cluster.logs()}`;
    throw e;
  }
});

test("what make run serves: two tabs on switchboard dev pick nicknames, get demo tokens and talk", { timeout: 60000 }, async (t) => {
  const browserType = await chromium();
  const dev = await startDev(CONFIG, ["--demo-tokens"]);
  t.after(() => dev.proc.kill());
  const context = await browserType.launchPersistentContext(tempDir("sb-chromium-"), LAUNCH);
  t.after(() => context.close());
  const errors = [];
  const tab = async (nick) => {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(`${nick}: ${e.message}`));
    await page.goto(`${dev.http}/chat/`);
    // The form asks for a nickname; joining fetches a token for it from /demo/token.
    await page.fill("#nick", nick);
    await page.click("#join button");
    await waitFor(`${nick}'s tab to connect`, async () => (await page.$eval("#status", (s) => s.textContent)).includes(`connected as ${nick}`));
    return page;
  };
  const carol = await tab("carol");
  await say(carol, "anyone here?");
  const dave = await tab("dave");
  await waitFor("the history on join", async () => (await messages(dave)).includes("carol: anyone here?"));
  await say(dave, "hi carol");
  await waitFor("dave's message at carol", async () => (await messages(carol)).includes("dave: hi carol"));
  for (const page of [carol, dave]) {
    await waitFor("both names in the presence list", async () => /carol/.test(await presence(page)) && /dave/.test(await presence(page)));
  }
  assert.deepEqual(await messages(dave), ["carol: anyone here?", "dave: hi carol"]);
  assert.deepEqual(errors, [], "no script errors on the pages");
});
