-- mod_push2_bridge: the Prosody side of push2 (Push 2.0, urn:xmpp:push2:0).
--
-- It owns only what needs Prosody's internals and forwards facts to push2d,
-- an external component (XEP-0114), over the bridge protocol
-- (docs/bridge-protocol.md, namespace urn:push2:bridge:1). All decisions live
-- in push2d.
--
--   * <enable/> and <disable/> from clients (Push 2.0, and XEP-0357's
--     urn:xmpp:push:0, which push2d serves too) go to push2d as IQs; the
--     client gets push2d's real answer (result or the exact error). The same holds
--     for an <enable/> inlined in a SASL2/Bind2 request (mod_sasl2_bind2):
--     the answer comes back inside <bound/>, in the same round trip.
--   * Stanza events go to push2d as messages, one per stanza whatever the
--     number of triggers that saw it in one turn of the event loop: offline
--     storage, the user's archive (MAM), the XEP-0198 queue of a hibernated
--     session, a session that stopped acking, groupchat messages for a
--     session that is gone. push2d acks them and dedupes (one push per
--     registration and stanza). Unacked events are kept
--     (bounded) and replayed when push2d comes back.
--   * Session activity (a message with a body or a chat state sent by a
--     client) goes to push2d, rate-limited, for <grace/>.
--   * The user's nick in each joined room goes with events about that room
--     (mentions are matched on it).
--   * A hibernated session whose registration push2d accepted is kept up to
--     push2_max_hibernation_timeout, until its first push, so the device
--     can come back and resume.
--   * push2d sends notifications through the bridge, which sends them from
--     this host to the push service and passes error replies back.
--   * The account's disco#info lists urn:xmpp:push2:0 and every profile
--     push2d holds, as push2d announces them.
--
-- Every hook is wrapped so that nothing here can throw into Prosody, and no
-- hook ever consumes an event: offline storage, archiving and delivery happen
-- exactly as without this module, whatever push2d does.

-- Prosody 13 names its libraries prosody.util.*; 0.12 knows only util.*
-- (13 still accepts the old names, as a transition).
local function import(name)
	local ok, lib = pcall(require, "prosody." .. name);
	if ok then return lib; end
	return require(name);
end

local st = import "util.stanza";
local jid = import "util.jid";
-- Every id the bridge makes (events, whose acks it matches; IQs to push2d,
-- whose answers module:send_iq matches) is util.id.medium(): 18 bytes from
-- util.random, unguessable, so no one but push2d can answer for them.
local id = import "util.id";
local async = import "util.async";
local watchdog = import "util.watchdog";
local add_filter = import "util.filters".add_filter;
local time_now = import "util.time".now;
local new_cache = import "util.cache".new;
local modulemanager = import "core.modulemanager";

local xmlns_push2 = "urn:xmpp:push2:0";
local xmlns_push0 = "urn:xmpp:push:0"; -- XEP-0357, served by push2d too
local xmlns_bridge = "urn:push2:bridge:1";
local xmlns_stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
local xmlns_chatstates = "http://jabber.org/protocol/chatstates";
local xmlns_muc = "http://jabber.org/protocol/muc";
local xmlns_muc_user = "http://jabber.org/protocol/muc#user";
local xmlns_mam = "urn:xmpp:mam:2";

-- Prosody 13 reads periods with units ("72 hours", "10s") and checks
-- integers; 0.12 has only get_option_number (seconds). A value either cannot
-- read falls back to the default (Prosody has logged why).
local function option_period(name, default, min)
	local value;
	if module.get_option_period then
		value = module:get_option_period(name, default, min);
	else
		value = module:get_option_number(name, default);
		if value and min and value < min then value = min; end
	end
	return value or default;
end

local function option_integer(name, default, min)
	local value;
	if module.get_option_integer then
		value = module:get_option_integer(name, default, min);
	else
		value = module:get_option_number(name, default);
		if value then value = math.floor(value); end
		if value and min and value < min then value = min; end
	end
	return value or default;
end

local component = module:get_option_string("push2_component", "push2." .. module.host);
local iq_timeout = option_period("push2_iq_timeout", 10, 1);
local max_pending = option_integer("push2_max_pending_events", 10000, 1);
local max_hibernation = option_period("push2_max_hibernation_timeout", 72*3600, 0);
local activity_interval = option_period("push2_activity_interval", 5, 0);
local max_routed = option_integer("push2_max_routed_notifications", 10000, 1);

local host_sessions = prosody.hosts[module.host].sessions;

---------------------------------------------------------------------------
-- Modules that answer the same <enable/>. Next to the bridge, either would
-- handle the client's enable IQ at the same priority, and which one answers
-- is arbitrary: push2d might never see the registration. push2d serves
-- XEP-0357 clients itself, so the bridge refuses to run next to them.

local conflicting = {
	cloud_notify = "mod_cloud_notify (XEP-0357; a core module in Prosody 13, which Debian's default prosody.cfg.lua enables)",
	push2 = "the community mod_push2",
};

local function conflict_text(name)
	return ("%s is enabled on %s next to mod_push2_bridge: remove %q from modules_enabled"
		.. " (push2d serves XEP-0357 and Push 2.0 clients itself) and restart Prosody"):format(
		conflicting[name], module.host, name);
end

do
	-- The host's whole module set from the config (global and host
	-- modules_enabled, minus modules_disabled), whatever the load order.
	local enabled = modulemanager.get_modules_for_host(module.host);
	for name in pairs(conflicting) do
		if enabled:contains(name) or modulemanager.is_loaded(module.host, name) then
			local text = conflict_text(name);
			module:log("error", "not loading: %s", text);
			error("mod_push2_bridge not loaded: " .. text, 0);
		end
	end
end

-- Loaded later at run time (prosodyctl shell, another module's depends):
-- the newcomer stays, the bridge goes, saying why.
module:hook("module-loaded", function(event)
	if event.host == module.host and conflicting[event.module] then
		module:log("error", "unloading mod_push2_bridge: %s", conflict_text(event.module));
		module:add_timer(0, function()
			modulemanager.unload(module.host, module.name);
		end);
	end
end);

-- The features push2d last announced. Until it announces any, the account
-- disco (and Bind2) shows nothing of push2: advertising a service that
-- cannot answer would make clients register into a void.
local features = {};

-- The accounts that have registrations, as push2d last told
-- (docs/bridge-protocol.md "Accounts with registrations"): account →
-- true. nil until push2d has sent a whole list: until then every account is
-- reported, as push2d may have registrations for any. A stanza for an
-- account not in the list costs nothing more: no event, no copy, no buffer.
local registered = nil;
local building, building_list = nil, nil; -- the list push2d is sending, by chunks

-- Account changes sent to push2d and not yet applied (see "Accounts"
-- below), by account → state.
local account_changes;

-- An account whose enabling push2d has not yet answered counts as having
-- registrations: push2d sends the <add/> for it just before its result, and a
-- message that arrives in between must still be reported (push2d drops the
-- event if the account has none).
local function has_registrations(account)
	return registered == nil or registered[account] == true
		or (account_changes ~= nil and account_changes:get(account) == "enabled");
end

-- Events sent and not yet acked by push2d, in order, bounded: the oldest is
-- dropped (and logged) when full.
local pending = new_cache(max_pending, function(event_id)
	module:log("warn", "push2 event buffer full (%d): dropping the oldest unacked event %s", max_pending, event_id);
end);

-- Notifications routed to push services, by notification id → the bare
-- JID of the service it was sent to, bounded (the least recently sent is
-- forgotten first). An error reply is passed to push2d only when its id is
-- one of these and it comes from that service: anyone can send the server an
-- error with a guessed or overheard id (docs/bridge-protocol.md "Delivery
-- errors"). push2d checks the sender again against its outbox.
local routed = new_cache(max_routed);

local function bare_prepped(addr)
	return addr and jid.prep(jid.bare(addr));
end

local function safely(name, f)
	return function(...)
		local ok, ret = xpcall(f, debug.traceback, ...);
		if not ok then
			module:log("error", "push2 bridge: %s failed: %s", name, ret);
			return nil;
		end
		return ret;
	end
end

local function component_env()
	local h = prosody.hosts[component];
	return h and h.modules and h.modules.component;
end

local function component_connected()
	local env = component_env();
	return env and env.connected or false;
end

-- The registration id of a session: the SASL2 client id when it has one,
-- else the resource (DESIGN.md "Delivery and state").
local function registration_id(session)
	return session.client_id or session.resource;
end

-- Every id push2d may know this session's registration by: its own, and
-- the one push2d gave when it accepted an enable on this session (an
-- XEP-0357 registration is keyed by app server and node, not by session).
local function session_registrations(session)
	local own, given = registration_id(session), session.push2_registration;
	if given and given ~= own then
		return { own, given };
	end
	return { own };
end

local function account_of(session)
	return session.username .. "@" .. session.host;
end

---------------------------------------------------------------------------
-- push2d's parse limits (docs/bridge-protocol.md "Stanzas over the
-- limits"). push2d refuses a stanza over them unread, so the bridge checks
-- first and never sends (nor buffers) one: an <enable/> over them is
-- answered here, a message is reported by its outline. The limits are the
-- ones push2d announced in <features/>; until it has, those push2d has
-- always read with.

local limits = { bytes = 256*1024, elements = 4096, depth = 64, attrs = 16384, element_attrs = 256, name_bytes = 256 };

local limit_names = { bytes = "max-bytes", elements = "max-elements", depth = "max-depth",
	attrs = "max-attrs", element_attrs = "max-element-attrs", name_bytes = "max-name-bytes" };

-- <limits/> from push2d's <features/>: all of them, or none (a partial or
-- malformed list keeps the previous limits).
local function set_limits(el)
	local new = {};
	for key, attr in pairs(limit_names) do
		local n = tonumber(el.attr[attr]);
		if not n or n < 1 then
			module:log("warn", "push2d announced limits without a valid %s; keeping the previous ones", attr);
			return;
		end
		new[key] = math.floor(n);
	end
	limits = new;
end

-- What the stanza's envelope adds, counted as push2d counts the whole
-- stanza it reads: the <message/> or <iq/> (depth 1) and the protocol's
-- element (depth 2) with their attributes; bytes with room for JIDs and ids.
local function envelope_usage(extra_elements)
	return { elements = 2 + extra_elements, attrs = 12 + extra_elements, bytes = 4096 + 64 * extra_elements };
end

-- Why stanza (at depth 3, inside the envelope usage u describes) is over
-- push2d's limits, or nil. Counted as push2d's parser counts: every
-- element, the attributes the serializer writes (namespace declarations
-- included), names, attribute values and text; it stops at the first limit.
local function over_limits(stanza, u)
	local function walk(el, depth)
		u.elements = u.elements + 1;
		if u.elements > limits.elements then return ("more than %d elements"):format(limits.elements); end
		if depth > limits.depth then return ("nested deeper than %d elements"):format(limits.depth); end
		if #el.name > limits.name_bytes then return ("a name longer than %d bytes"):format(limits.name_bytes); end
		local n = 0;
		u.bytes = u.bytes + #el.name;
		for k, v in pairs(el.attr) do
			n = n + 1;
			if k:find("\1", 1, true) then n = n + 1; end -- a prefixed attribute: its prefix is declared
			if #k > limits.name_bytes then return ("a name longer than %d bytes"):format(limits.name_bytes); end
			u.bytes = u.bytes + #k + #v;
		end
		if n > limits.element_attrs then return ("more than %d attributes on one element"):format(limits.element_attrs); end
		u.attrs = u.attrs + n;
		if u.attrs > limits.attrs then return ("more than %d attributes"):format(limits.attrs); end
		for _, child in ipairs(el) do
			if type(child) == "string" then
				u.bytes = u.bytes + #child;
			else
				local why = walk(child, depth + 1);
				if why then return why; end
			end
			if u.bytes > limits.bytes then return ("larger than %d bytes"):format(limits.bytes); end
		end
		if u.bytes > limits.bytes then return ("larger than %d bytes"):format(limits.bytes); end
	end
	return walk(stanza, 3);
end

-- s cut to at most n bytes, at a UTF-8 character boundary.
local function cut_utf8(s, n)
	if #s <= n then return s; end
	while n > 0 do
		local b = s:byte(n + 1);
		if b < 0x80 or b >= 0xC0 then break; end
		n = n - 1;
	end
	return s:sub(1, n);
end

-- The outline of a message over push2d's limits, which push2d evaluates
-- instead of the message (docs/bridge-protocol.md "Stanzas over the
-- limits"): its from, to, id and type; its first 32 top-level children as
-- empty elements (name and namespace only), except the first <body/>,
-- which keeps its text cut to 1024 bytes. Enough for the match profiles'
-- facts (a body, an encrypted payload, a call, a chat state, ...), small
-- whatever the message.
local outline_max_children, outline_max_body, outline_max_value = 32, 1024, 3071;

local function outline(stanza)
	local attr = { xmlns = "jabber:client" };
	for _, name in ipairs({ "from", "to", "id", "type" }) do
		local v = stanza.attr[name];
		if v and #v <= outline_max_value then attr[name] = v; end
	end
	local copy = st.stanza(stanza.name, attr);
	local kept, body = 0, false;
	for _, tag in ipairs(stanza.tags) do
		if kept == outline_max_children then break; end
		local ns = tag.attr.xmlns;
		if #tag.name <= limits.name_bytes and (not ns or #ns <= outline_max_value) then
			if tag.name == "body" and (ns == nil or ns == "jabber:client") then
				if not body then
					body = true;
					copy:text_tag("body", cut_utf8(tag:get_text() or "", outline_max_body));
					kept = kept + 1;
				end
			else
				copy:tag(tag.name, { xmlns = ns }):up();
				kept = kept + 1;
			end
		end
	end
	return copy;
end

-- The error a client's request over push2d's limits gets, or nil.
local function refuse_over_limits(payload)
	local why = over_limits(payload, envelope_usage(0));
	if why then
		return { type = "modify", condition = "policy-violation", text = ("the request is over push2d's parse limits (%s)"):format(why) };
	end
end

---------------------------------------------------------------------------
-- Room nicks: the user's nick in each room it joined, per account, learnt
-- from the presence the user sends to room/nick and from the room's
-- self-presence (status 110), cleared when the user leaves, is removed or
-- gets an error from the room. Events about stanzas from a room carry it.

local nicks = {}; -- account → { room → nick }

local function set_nick(account, room, nick)
	local rooms = nicks[account];
	if not rooms then
		if not nick then return; end
		rooms = {};
		nicks[account] = rooms;
	end
	rooms[room] = nick;
	if not nick and next(rooms) == nil then
		nicks[account] = nil;
	end
end

local function nick_in(account, room)
	local rooms = nicks[account];
	return rooms and rooms[room];
end

-- The nick an event about stanza should carry: the one for the room the
-- stanza comes from (groupchat or a private message from an occupant).
local function nick_for(account, stanza)
	local from = stanza.attr.from;
	return from and nick_in(account, jid.bare(from)) or nil;
end

-- Presence the user's client sends to an occupant JID.
module:hook("pre-presence/full", safely("nick-out", function(event)
	local origin, stanza = event.origin, event.stanza;
	if not origin or origin.type ~= "c2s" or not origin.username then return; end
	local room, nick = jid.bare(stanza.attr.to), jid.resource(stanza.attr.to);
	if not nick then return; end
	local account = account_of(origin);
	local t = stanza.attr.type;
	if t == nil then
		-- A join (it carries the MUC <x/>) or a nick change in a room we know.
		if stanza:get_child("x", xmlns_muc) or nick_in(account, room) then
			set_nick(account, room, nick);
		end
	elseif t == "unavailable" then
		set_nick(account, room, nil);
	end
end), 10);

-- Presence from a room to the user: the room's word on the nick wins (it
-- may change the nick the client asked for).
module:hook("presence/full", safely("nick-in", function(event)
	local stanza = event.stanza;
	local from = stanza.attr.from;
	if not from then return; end
	local account = jid.bare(stanza.attr.to);
	if not account then return; end
	local room, nick = jid.bare(from), jid.resource(from);
	local t = stanza.attr.type;
	if t == "error" then
		if nick_in(account, room) then set_nick(account, room, nil); end
		return;
	end
	local x = stanza:get_child("x", xmlns_muc_user);
	if not x or not nick then return; end
	local codes = {};
	for status in x:childtags("status") do
		codes[status.attr.code or ""] = true;
	end
	if not codes["110"] then return; end
	if t == nil then
		set_nick(account, room, nick);
	elseif t == "unavailable" then
		local item = x:get_child("item");
		if codes["303"] and item and item.attr.nick then
			set_nick(account, room, item.attr.nick); -- nick change
		elseif nick_in(account, room) == nick then
			set_nick(account, room, nil);
		end
	end
end), 10);

---------------------------------------------------------------------------
-- Hibernation: a session whose registration push2d accepted stays
-- hibernated up to push2_max_hibernation_timeout instead of
-- smacks_hibernation_time, until its first push; then the normal timeout
-- applies again, counted from that push (as mod_cloud_notify does), so a
-- device that was woken up has the usual time to come back.

-- mod_smacks' watchdog callback takes the watchdog that fired (Prosody
-- 0.12.4 and later, and 13, pass it) and ignores one that is not the
-- session's current hibernating_watchdog ("Releasing a stray watchdog"):
-- so the saved callback is called with the extended watchdog, which is the
-- current one, never with nothing. 0.12.3 passes it too and its callback
-- ignores the argument.
local function extend_hibernation(session)
	local wd = session.hibernating_watchdog;
	if not session.push2_registration or not wd or session.push2_saved_watchdog then return; end
	session.push2_saved_watchdog = { callback = wd.callback, timeout = wd.timeout };
	wd:cancel();
	session.hibernating_watchdog = watchdog.new(max_hibernation, function(this_dog)
		if this_dog ~= session.hibernating_watchdog then
			-- Replaced (restored, resumed) since: not ours to end.
			return;
		end
		local saved = session.push2_saved_watchdog;
		session.push2_saved_watchdog = nil;
		session.log("debug", "push2: extended hibernation (%gs) is over", max_hibernation);
		if saved then saved.callback(this_dog); end
	end);
	session.log("debug", "push2: hibernation extended to %gs (registration %s)", max_hibernation, session.push2_registration);
end

local function restore_hibernation(session, why)
	local saved = session.push2_saved_watchdog;
	if not saved then return; end
	session.push2_saved_watchdog = nil;
	if session.hibernating_watchdog then
		session.hibernating_watchdog:cancel();
		session.hibernating_watchdog = nil;
	end
	if session.hibernating and not session.destroyed then
		session.hibernating_watchdog = watchdog.new(saved.timeout, saved.callback);
		session.log("debug", "push2: normal hibernation timeout (%gs) restored: %s", saved.timeout, why);
	end
end

local function each_session(account)
	local user = host_sessions[jid.node(account)];
	return pairs(user and user.sessions or {});
end

---------------------------------------------------------------------------
-- enable / disable

local function ask_push2d(kind, session, payload)
	local inner = st.clone(payload);
	inner.attr.xmlns = payload.attr.xmlns or xmlns_push2;
	local req = st.iq({ type = "set", from = module.host, to = component, id = id.medium() })
		:tag(kind, { xmlns = xmlns_bridge, account = account_of(session), registration = registration_id(session) })
			:add_child(inner);
	return module:send_iq(req, nil, iq_timeout);
end

-- push2d answered: remember (or forget) on the session that its
-- registration is push2d's, for the hibernation extension and the
-- <only/>/<live/> lists. push2d's result names the registration
-- (<registered id=…/>); without it, it is the session's own id.
local function applied(kind, session, answer)
	if kind == "enable" then
		local result = answer and answer.stanza;
		local registered = result and result:get_child("registered", xmlns_bridge);
		session.push2_registration = registered and registered.attr.id or registration_id(session);
	else
		session.push2_registration = nil;
		restore_hibernation(session, "disabled");
	end
end

local function forward_iq(kind)
	return safely(kind, function(event)
		local origin, stanza = event.origin, event.stanza;
		if not component_connected() then
			origin.send(st.error_reply(stanza, "wait", "service-unavailable", "the push service is temporarily unavailable"));
			return true;
		end
		local refused = refuse_over_limits(stanza.tags[1]);
		if refused then
			origin.send(st.error_reply(stanza, refused.type, refused.condition, refused.text));
			return true;
		end
		ask_push2d(kind, origin, stanza.tags[1]):next(function(answer)
			applied(kind, origin, answer);
			origin.send(st.reply(stanza));
		end, function(err)
			local e = err or {};
			origin.send(st.error_reply(stanza, e.type or "wait", e.condition or "internal-server-error", e.text));
		end);
		return true;
	end);
end

module:hook("iq-set/self/" .. xmlns_push2 .. ":enable", forward_iq("enable"));
module:hook("iq-set/self/" .. xmlns_push2 .. ":disable", forward_iq("disable"));
-- XEP-0357 clients: push2d serves them with the same pipeline.
module:hook("iq-set/self/" .. xmlns_push0 .. ":enable", forward_iq("enable"));
module:hook("iq-set/self/" .. xmlns_push0 .. ":disable", forward_iq("disable"));

---------------------------------------------------------------------------
-- SASL2 / Bind2 inline enable (mod_sasl2 + mod_sasl2_bind2).
--
-- mod_sasl2_bind2 fires advertise-bind-features while building the stream
-- features, and enable-bind-features after binding the resource, before
-- it sends SASL2's <success/> (which carries <bound/>). We forward the
-- inlined <enable/> to push2d under the SASL2 client id and wait for the
-- answer right there, with util.async: mod_c2s runs every element of a
-- stream in the session's async runner, so waiting pauses only this
-- connection (its reads are paused too) for at most push2_iq_timeout
-- seconds, and the answer goes out in the same <success/>. Outside an async
-- context (not the case with Prosody 0.12's mod_c2s) we cannot wait and
-- answer wait/resource-constraint, asking the client to use the IQ.

local function inline_error(etype, condition, text)
	local failed = st.stanza("failed", { xmlns = xmlns_push2 })
		:tag("error", { xmlns = "jabber:client", type = etype or "wait" })
			:tag(condition or "internal-server-error", { xmlns = xmlns_stanzas }):up();
	if text then
		failed:text_tag("text", text, { xmlns = xmlns_stanzas });
	end
	return failed:up();
end

module:hook("advertise-bind-features", safely("advertise-bind", function(event)
	if #features > 0 then
		event.features:tag("feature", { var = xmlns_push2 }):up();
	end
end));

module:hook("enable-bind-features", safely("bind2-enable", function(event)
	local session, request, result = event.session, event.request, event.result;
	local enable = request:get_child("enable", xmlns_push2);
	if not enable then return; end
	local answer;
	local refused = refuse_over_limits(enable);
	if not component_connected() then
		answer = inline_error("wait", "service-unavailable", "the push service is temporarily unavailable");
	elseif refused then
		answer = inline_error(refused.type, refused.condition, refused.text);
	elseif not async.ready() then
		module:log("warn", "push2: inline enable outside an async context; the client must use the IQ");
		answer = inline_error("wait", "resource-constraint", "inline enable is not available; send <enable/> as an IQ");
	else
		local ok, err = async.wait_for(ask_push2d("enable", session, enable));
		if ok then
			applied("enable", session, ok);
			answer = st.stanza("enabled", { xmlns = xmlns_push2 });
		else
			local e = err or {};
			answer = inline_error(e.type, e.condition, e.text);
		end
	end
	result:add_child(answer);
end), 50);

---------------------------------------------------------------------------
-- disco#info of the account

module:hook("account-disco-info", safely("disco", function(event)
	for _, var in ipairs(features) do
		event.reply:tag("feature", { var = var }):up();
	end
end));

---------------------------------------------------------------------------
-- events to push2d

local function archive_id_of(stanza, account)
	for tag in stanza:childtags("stanza-id", "urn:xmpp:sid:0") do
		if tag.attr.by == account then return tag.attr.id; end
	end
end

-- Only messages are reported, and not archive query results (a replay of
-- the archive, not news).
local function reportable(stanza)
	return st.is_stanza(stanza) and stanza.name == "message"
		and (stanza.attr.xmlns == nil or stanza.attr.xmlns == "jabber:client")
		and not stanza:get_child("result", xmlns_mam);
end

-- report sends push2d one stanza event (docs/bridge-protocol.md "Stanza
-- events") and keeps it until push2d acks it. opts: archive_id,
-- archive_by, only (registration ids), live (registration ids).
local watermark_dirty = false; -- an event was reported since the watermark was stored

-- The event is built as text, once (docs/bridge-protocol.md "Cost
-- rationale"): no copy of the stanza (st.clone) and no stanza:tag for the
-- values the bridge made itself (util.stanza validates every attribute it
-- is given: 11% of Prosody's instructions on a burst, issue 12). The
-- stanza is serialized in place, under jabber:client for the time of its
-- tostring; what is kept until the ack, and replayed, is the same string.
local xml_escape = st.xml_escape;
local event_head = "<message from='" .. xml_escape(module.host) .. "' to='" .. xml_escape(component) .. "' id='";

-- stanza serialized in namespace jabber:client (Prosody's routed stanzas
-- have no xmlns of their own), without copying it.
local function client_xml(stanza)
	local attr = stanza.attr;
	local ns = attr.xmlns;
	attr.xmlns = "jabber:client";
	local ok, xml = pcall(tostring, stanza);
	attr.xmlns = ns;
	if not ok then error(xml, 0); end
	return xml;
end

-- Write xml on the component connection: mod_component's session.send is
-- conn:write(tostring(data)) in Prosody 0.12 and 13, with no filters, so a
-- string is written as it is, without routing a stanza through the
-- server. Returns whether push2d is connected.
local function send_to_push2d(xml)
	local env = component_env();
	local session = env and env.connected and env.session;
	if not session then return false; end
	session.send(xml);
	return true;
end

local function report(trigger, account, stanza, opts)
	if not has_registrations(account) then return; end
	watermark_dirty = true;
	opts = opts or {};
	local archive_id, archive_by = opts.archive_id, opts.archive_by;
	if not archive_id then
		archive_id = archive_id_of(stanza, account);
		archive_by = archive_id and account or nil;
	end
	local event_id = id.medium();
	local only, live = opts.only, opts.live;
	local truncated = over_limits(stanza, envelope_usage(#(only or {}) + #(live or {})));
	local buf = { event_head, event_id, "'><event xmlns='urn:push2:bridge:1' id='", event_id,
		"' account='", xml_escape(account), "' trigger='", trigger, "'" };
	local function attr(name, value)
		if value then
			buf[#buf+1] = " " .. name .. "='" .. xml_escape(value) .. "'";
		end
	end
	attr("archive-id", archive_id);
	attr("archive-by", archive_by);
	attr("nick", nick_for(account, stanza));
	attr("truncated", truncated);
	buf[#buf+1] = ">";
	for _, reg in ipairs(only or {}) do
		buf[#buf+1] = "<only id='" .. xml_escape(reg) .. "'/>";
	end
	for _, reg in ipairs(live or {}) do
		buf[#buf+1] = "<live id='" .. xml_escape(reg) .. "'/>";
	end
	if truncated then
		module:log("info", "push2: a message for %s is over push2d's parse limits (%s): reported by its outline", account, truncated);
		buf[#buf+1] = tostring(outline(stanza));
	else
		buf[#buf+1] = client_xml(stanza);
	end
	buf[#buf+1] = "</event></message>";
	local ev = { account = account, xml = table.concat(buf) };
	pending:set(event_id, ev);
	send_to_push2d(ev.xml);
end

-- The registration ids of the account's sessions that are live (connected
-- and not hibernated): those devices see the stanza themselves. except: a
-- session not to count as live (one that stopped acking).
local function live_registrations(account, except)
	local live = {};
	for _, session in each_session(account) do
		if session ~= except and not session.hibernating and not session.destroyed and session.resource then
			for _, reg in ipairs(session_registrations(session)) do
				table.insert(live, reg);
			end
		end
	end
	return live;
end

-- One event per stanza (docs/bridge-protocol.md "One event per stanza"):
-- mod_mam fires archive-message-added (message/bare and message/full,
-- priority 0) before the stanza is delivered, and puts the archive's
-- <stanza-id/> into the stanza that goes on to delivery. So the archived
-- event is held until the end of this turn of the event loop (one shared
-- zero-delay timer), keyed by archive id; if offline storage, a hibernated
-- session's queue or a session that owes an ack takes the same stanza in
-- that turn, its trigger reports it once, with the archive id, and the
-- held event is dropped. What is still held at the end of the turn (a
-- message a live session took, or one no other trigger saw) is reported
-- as archived then.
local held, held_order, held_timer = {}, {}, nil; -- archive id → { account, stanza }

local function flush_held()
	held_timer = nil;
	local entries, order = held, held_order;
	held, held_order = {}, {};
	for _, key in ipairs(order) do
		local h = entries[key];
		if h then
			report("archived", h.account, h.stanza, { archive_id = key, archive_by = h.account, live = live_registrations(h.account) });
		end
	end
end

local function hold_archived(account, key, stanza)
	if held[key] == nil then table.insert(held_order, key); end
	held[key] = { account = account, stanza = stanza };
	if not held_timer then
		held_timer = module:add_timer(0, safely("archived", flush_held));
	end
end

-- The archive id of stanza if its archived event is held, which is then
-- dropped: the caller reports the stanza for both.
local function take_held(account, stanza)
	if not held_timer then return nil; end
	local key = archive_id_of(stanza, account);
	local h = key and held[key];
	if h and h.account == account then
		held[key] = nil;
		return key;
	end
end

-- A stanza queued for one session that cannot take it now (hibernated or
-- not acking): only that session's registration is evaluated, unless the
-- archive took the stanza in this turn: then the one event carries the
-- archive id and covers the archived event's registrations too (all of
-- the account's minus the live ones; this session does not count as
-- live).
local function report_for_session(trigger, session, stanza)
	if not reportable(stanza) or not session.username then return; end
	if stanza.attr.type == "groupchat" then trigger = "groupchat"; end
	local account = account_of(session);
	local key = take_held(account, stanza);
	if key then
		report(trigger, account, stanza, { archive_id = key, archive_by = account, live = live_registrations(account, session) });
		return;
	end
	report(trigger, account, stanza, { only = session_registrations(session) });
end

-- Offline storage: the account has no session that can take the message.
-- Runs before mod_offline (priority -1) and never returns a value, so
-- storage goes on as usual.
module:hook("message/offline/handle", safely("offline", function(event)
	local stanza = event.stanza;
	local node = event.username or jid.node(stanza.attr.to);
	if not node or not reportable(stanza) then return; end
	local account = node .. "@" .. module.host;
	-- The archived event of this stanza, if held, is this one (same
	-- registrations: the account has no session that takes it).
	take_held(account, stanza);
	report("offline", account, stanza);
end), 10);

-- The user's archive (mod_mam) stored a message for the user. Sessions that
-- are live are listed, so push2d evaluates only registrations whose session
-- is gone or hibernated.
module:hook("archive-message-added", safely("archived", function(event)
	local user, stanza, origin = event.for_user, event.stanza, event.origin;
	if not user or not stanza or not reportable(stanza) then return; end
	local account = user .. "@" .. module.host;
	-- Only what the user received, not the copy of what the user sent.
	if jid.bare(stanza.attr.to) ~= account then return; end
	if origin and origin.type == "c2s" and origin.username == user and origin.host == module.host then return; end
	if not has_registrations(account) then return; end
	if not event.id then
		report("archived", account, stanza, { live = live_registrations(account) });
		return;
	end
	hold_archived(account, event.id, stanza);
end));

-- A groupchat message for a full JID with no session (mod_message passes it
-- to the bare JID). Live sessions are listed as for the archive.
module:hook("message/bare/groupchat", safely("groupchat", function(event)
	local stanza = event.stanza;
	local account = jid.bare(stanza.attr.to);
	if not account or not reportable(stanza) then return; end
	report("groupchat", account, stanza, { live = live_registrations(account) });
end), 10);

-- XEP-0198: the session lost its connection and hibernates. Its unacked
-- queue may hold stanzas the device never saw; everything queued from now
-- on is reported as it comes (smacks-hibernation-stanza-queued).
module:hook("smacks-hibernation-start", safely("hibernation-start", function(event)
	local session = event.origin;
	extend_hibernation(session);
	for _, stanza in ipairs(event.queue or {}) do
		report_for_session("hibernated", session, stanza);
	end
end));

module:hook("smacks-hibernation-stanza-queued", safely("hibernation-queued", function(event)
	report_for_session("hibernated", event.origin, event.stanza);
end));

module:hook("smacks-hibernation-end", safely("hibernation-end", function(event)
	-- mod_smacks cancels the (extended) watchdog itself.
	local session = event.resumed or event.origin;
	if session then session.push2_saved_watchdog = nil; end
end));

-- XEP-0198: a live session did not ack within smacks_max_ack_delay. Its
-- unacked queue is reported, and so is every message sent to it while it
-- still owes the ack (mod_smacks fires the event once per <r/>).
local report_for_session_safely = safely("ack-delayed-stanza", report_for_session);

local function ack_delayed_filter(stanza, session)
	if session.push2_ack_delayed then
		if session.awaiting_ack and not session.hibernating and not session.destroyed then
			report_for_session_safely("ack-delayed", session, stanza);
		else
			session.push2_ack_delayed = nil;
		end
	end
	return stanza;
end

module:hook("smacks-ack-delayed", safely("ack-delayed", function(event)
	local session = event.origin;
	if event.stanza then
		report_for_session("ack-delayed", session, event.stanza);
	end
	for _, stanza in ipairs(event.queue or {}) do
		report_for_session("ack-delayed", session, stanza);
	end
	session.push2_ack_delayed = true;
	-- After mod_smacks' queueing filter (-999), so a hibernated session's
	-- stanzas are left to smacks-hibernation-stanza-queued.
	add_filter(session, "stanzas/out", ack_delayed_filter, -1000);
end));

---------------------------------------------------------------------------
-- Session activity, for <grace/>: a message with a body or a chat state sent
-- by one of the user's clients. At most one report per session every
-- push2_activity_interval seconds: the first at once, later ones folded
-- into one report at the end of the interval, so push2d's view is never
-- more than the interval late. Not buffered while push2d is away: it is
-- only useful now.

local function send_activity(session)
	if not component_connected() or not session.username then return; end
	module:send(st.message({ from = module.host, to = component, id = id.medium() })
		:tag("activity", { xmlns = xmlns_bridge, account = account_of(session), registration = registration_id(session) }));
end

local function note_activity(event)
	local origin, stanza = event.origin, event.stanza;
	if not origin or origin.type ~= "c2s" or not origin.username or origin.host ~= module.host then return; end
	if stanza.attr.type == "error" then return; end
	if not (stanza:get_child("body") or stanza:child_with_ns(xmlns_chatstates)) then return; end
	local now = time_now();
	local last = origin.push2_activity_at;
	if not last or now - last >= activity_interval then
		origin.push2_activity_at = now;
		send_activity(origin);
	elseif not origin.push2_activity_timer then
		origin.push2_activity_timer = module:add_timer(last + activity_interval - now, safely("activity", function()
			origin.push2_activity_timer = nil;
			origin.push2_activity_at = time_now();
			send_activity(origin);
		end));
	end
end

module:hook("pre-message/bare", safely("activity", note_activity), 10);
module:hook("pre-message/full", safely("activity", note_activity), 10);
module:hook("pre-message/host", safely("activity", note_activity), 10);

---------------------------------------------------------------------------
-- messages from push2d

local function from_push2d(stanza)
	return stanza.attr.from == component;
end

-- Routing confirmations (docs/bridge-protocol.md "Routing
-- confirmations"): the ids of the notifications sent since the last
-- batch, confirmed to push2d in one message on the next turn of the event
-- loop, once what was sent has been written out.
local to_confirm, confirm_timer = {}, nil;

local function flush_confirmations()
	confirm_timer = nil;
	if #to_confirm == 0 then return; end
	-- Written as text on the component connection, as the events are
	-- (no stanza:tag per id; lost with the connection, push2d sends what
	-- was not confirmed again on the next one).
	local buf = { event_head, id.medium(), "'><routed xmlns='urn:push2:bridge:1'>" };
	for _, nid in ipairs(to_confirm) do
		buf[#buf+1] = "<n id='" .. xml_escape(nid) .. "'/>";
	end
	buf[#buf+1] = "</routed></message>";
	to_confirm = {};
	send_to_push2d(table.concat(buf));
end

local function confirm_routed(nid)
	if not nid then return; end
	table.insert(to_confirm, nid);
	if not confirm_timer then
		confirm_timer = module:add_timer(0, safely("routed", flush_confirmations));
	end
end

local function report_delivery_error(id_, from, etype, condition, text)
	module:send(st.message({ from = module.host, to = component, id = id.medium() })
		:tag("delivery-error", { xmlns = xmlns_bridge, id = id_, from = from,
			type = etype, condition = condition }):text(text or ""));
end

local function handle_push(push)
	local notification = push.tags[1];
	if not notification then return; end
	-- The inner stanza is sent as parsed, without a copy: the <push/>
	-- wrapper was parsed from push2d's stream for this alone, and nothing
	-- else reads it after this handler (which consumes the message). The
	-- wrapper itself stays (docs/bridge-protocol.md "Cost rationale"):
	-- mod_component closes a component's stream that sends from the
	-- user's domain, unless validate_from_addresses = false.
	local out = notification;
	out.attr.xmlns = nil;
	if out.name == "iq" then
		-- An XEP-0357 publish: sent from the user's bare JID (as
		-- mod_cloud_notify does), and the app server's IQ answer says
		-- whether it took it.
		local from = out.attr.from;
		if not from or jid.host(from) ~= module.host or jid.resource(from) then
			module:log("warn", "push2d sent a publish from %s; not sent", tostring(from));
			return;
		end
		-- module:send_iq takes an answer only from out.attr.to with
		-- out.attr.id (the notification id, random): the answer is the app
		-- server's.
		local nid = out.attr.id;
		local sent = module:send_iq(out, nil, iq_timeout);
		confirm_routed(nid);
		sent:next(function()
			module:send(st.message({ from = module.host, to = component, id = id.medium() })
				:tag("delivered", { xmlns = xmlns_bridge, id = nid, from = out.attr.to }));
		end, function(err)
			local e = err or {};
			report_delivery_error(nid, out.attr.to, e.type or "wait", e.condition or "remote-server-timeout", e.text);
		end);
	else
		out.attr.from = module.host;
		if out.attr.id and out.attr.to then
			routed:set(out.attr.id, bare_prepped(out.attr.to));
		end
		module:send(out);
		confirm_routed(out.attr.id);
	end
	-- The first push for a hibernated session: the device has been woken,
	-- the normal hibernation timeout applies from now.
	local account, reg = push.attr.account, push.attr.registration;
	if account and reg and jid.host(account) == module.host then
		for _, session in each_session(account) do
			if session.hibernating and session.push2_registration == reg then
				restore_hibernation(session, "pushed");
			end
		end
	end
end

---------------------------------------------------------------------------
-- Accounts the server deletes or disables (docs/bridge-protocol.md
-- "Accounts"): Prosody fires user-deleted (0.12 and 13) and user-disabled /
-- user-enabled (13) globally; the bridge tells push2d with an <account/> IQ
-- and keeps the change until push2d's result, so that one made while
-- push2d is away is sent when it is back. Only the latest state of an
-- account is kept (a later change supersedes an earlier one).

account_changes = new_cache(max_pending, function(account, state)
	module:log("warn", "push2 account change buffer full (%d): dropping %s of %s", max_pending, state, account);
end);

local send_account_change;

local function account_change_failed(account, state, err)
	local e = err or {};
	if e.type == "wait" or not e.type then
		-- push2d is away or busy: keep it, try again later (and on the next
		-- connection in any case).
		module:log("info", "push2d has not applied %s of %s (%s): trying again", state, account, tostring(e.condition or e.text or err));
		module:add_timer(iq_timeout, safely("account-retry", function()
			if account_changes:get(account) == state and component_connected() then
				send_account_change(account, state);
			end
		end));
		return;
	end
	module:log("error", "push2d refused %s of %s: %s %s", state, account, tostring(e.condition), tostring(e.text));
	if account_changes:get(account) == state then account_changes:set(account, nil); end
end

send_account_change = function(account, state)
	local req = st.iq({ type = "set", from = module.host, to = component, id = id.medium() })
		:tag("account", { xmlns = xmlns_bridge, account = account, state = state });
	module:send_iq(req, nil, iq_timeout):next(function()
		if account_changes:get(account) == state then account_changes:set(account, nil); end
		module:log("debug", "push2d applied %s of %s", state, account);
	end, function(err)
		account_change_failed(account, state, err);
	end);
end

local function on_account_change(state)
	return safely("account-" .. state, function(event)
		if event.host ~= module.host or not event.username then return; end
		local account = event.username .. "@" .. module.host;
		account_changes:set(account, state);
		module:log("info", "account %s %s: telling push2d", account, state);
		if component_connected() then
			send_account_change(account, state);
		end
	end);
end

module:hook_global("user-deleted", on_account_change("deleted"));
module:hook_global("user-disabled", on_account_change("disabled"));
module:hook_global("user-enabled", on_account_change("enabled"));

-- Send every buffered account change again (push2d is back).
local function replay_account_changes()
	for account, state in account_changes:items() do
		send_account_change(account, state);
	end
end

-- Send every unacked event again, oldest first.
local function replay()
	local list = {};
	for _, ev in pending:items() do -- newest first
		table.insert(list, 1, ev);
	end
	for _, ev in ipairs(list) do
		send_to_push2d(ev.xml);
	end
	if #list > 0 then
		module:log("info", "push2d is back: replayed %d unacked events", #list);
	end
end

-- After Prosody (re)starts, the events it had buffered are gone: the
-- first whole list push2d sends after the bridge loads makes it report
-- again the messages offline storage holds for the accounts with
-- registrations, those stored within push2d's dedupe window
-- (docs/bridge-protocol.md "Restarts of the server"). push2d's dedupe
-- drops those it already pushed. A few accounts per turn of the event
-- loop, so that a large list does not hold up the server.
local dedupe_window = 7*24*3600;
local rereported = false;
local offline_store = module:open_store("offline", "archive");

-- The archive watermark: a time before which every event the bridge
-- reported was acked by push2d, kept in Prosody's storage (store
-- "push2_bridge", host-level) so that it outlives a crash. After a
-- restart, the messages the user's archive took since the previous run's
-- watermark are reported again as `archived` events: among them those that
-- only a hibernated session's XEP-0198 queue held (docs/bridge-protocol.md
-- "Restarts of the server"). Checked every 5 s; written only when an event
-- was reported since the last write and the value moved, so an idle server
-- writes nothing and a busy one once per 5 s at most. Not written before the
-- re-report of this run has read the previous value (a second crash in
-- between must not lose it).
local archive_store = module:open_store(module:get_option_string("archive_store", "archive"), "archive");
local watermark_store = module:open_store("push2_bridge");
local previous_watermark = (watermark_store:get(nil) or {}).since;
local watermark, watermark_written = nil, previous_watermark;
local watermark_writes = false;

module:add_timer(5, safely("watermark", function()
	-- Nothing unacked, and no archived event held for the end of a turn
	-- ("One event per stanza"): it is not in pending yet.
	if pending:count() == 0 and not held_timer then
		watermark = os.time();
	end
	if watermark_writes and watermark_dirty and watermark and watermark ~= watermark_written then
		local ok, err = watermark_store:set(nil, { since = watermark });
		if ok then
			watermark_written, watermark_dirty = watermark, false;
		else
			module:log("warn", "push2: cannot store the archive watermark: %s", tostring(err));
		end
	end
	return 5;
end));

-- The archived messages the user received since `since` (one second of
-- slack: Prosody 0.12's archive times are whole seconds), as `archived`
-- events. Messages archived after this start are reported twice (by their
-- hook, and here): push2d's dedupe drops the second.
local function rereport_archive(account, since)
	local data, err = archive_store:find(jid.node(account), { start = since - 1 });
	if not data then
		module:log("warn", "push2: cannot read the archive of %s: %s", account, tostring(err));
		return 0;
	end
	local n = 0;
	for key, stanza in data do
		if has_registrations(account) and reportable(stanza) and jid.bare(stanza.attr.to) == account then
			report("archived", account, stanza, { archive_id = key, archive_by = account, live = live_registrations(account) });
			n = n + 1;
		end
	end
	return n;
end

local function rereport()
	local accounts = {};
	for account in pairs(registered or {}) do
		if jid.host(account) == module.host then table.insert(accounts, account); end
	end
	local since, i, n, na = os.time() - dedupe_window, 1, 0, 0;
	-- No watermark from a previous run (first start with this bridge):
	-- archived messages are not reported again.
	local archive_since = previous_watermark and math.max(previous_watermark, since);
	local function batch()
		for _ = 1, 50 do
			local account = accounts[i];
			if not account then
				module:log("info", "push2: reported %d stored offline and %d archived messages of %d accounts with registrations again", n, na, #accounts);
				watermark_writes = true;
				return;
			end
			if archive_since then
				na = na + rereport_archive(account, archive_since);
			end
			i = i + 1;
			local data, err = offline_store:find(jid.node(account), { start = since });
			if not data then
				module:log("warn", "push2: cannot read the offline messages of %s: %s", account, tostring(err));
			else
				for _, stanza in data do
					if has_registrations(account) and reportable(stanza) then
						report("offline", account, stanza);
						n = n + 1;
					end
				end
			end
		end
		module:add_timer(0, safely("rereport", batch));
	end
	batch();
end

-- push2d's <accounts/>: a chunk of the whole list (list=…, last="true" on
-- the final one), or changes (<add/>, <remove/>). A whole list replaces
-- the previous one, and the buffered events of accounts not in it are
-- dropped (push2d would only ack them).
local function handle_accounts(el)
	local list = el.attr.list;
	if not list then
		for change in el:childtags() do
			local account = change.attr.jid;
			if account and (change.name == "add" or change.name == "remove") then
				local v = change.name == "add" or nil;
				if registered then registered[account] = v; end
				if building then building[account] = v; end
			end
		end
		return;
	end
	if list ~= building_list then
		building, building_list = {}, list;
	end
	for a in el:childtags("account") do
		if a.attr.jid then building[a.attr.jid] = true; end
	end
	if el.attr.last ~= "true" then return; end
	registered, building, building_list = building, nil, nil;
	if not rereported then
		rereported = true;
		module:add_timer(0, safely("rereport", rereport));
	end
	local dropped = {};
	for event_id, ev in pending:items() do
		if not registered[ev.account] then
			table.insert(dropped, event_id);
		end
	end
	for _, event_id in ipairs(dropped) do
		pending:set(event_id, nil);
	end
	local n = 0;
	for _ in pairs(registered) do n = n + 1; end
	module:log("debug", "push2d: %d accounts with registrations; %d buffered events of others dropped", n, #dropped);
end

-- Replay once per component connection: push2d announces its features on
-- every (re)connection, and mod_component fires component-authenticated;
-- whichever comes first replays, the other finds it done.
local replayed_for; -- the component session the buffer was last replayed to

local function replay_on_new_connection()
	local env = component_env();
	local session = env and env.connected and env.session;
	if session and session ~= replayed_for then
		replayed_for = session;
		replay();
		replay_account_changes();
	end
end

module:hook("message/host", safely("message", function(event)
	local stanza = event.stanza;
	if from_push2d(stanza) then
		if stanza.attr.type == "error" then
			-- push2d refused something of ours (a version it does not speak).
			local etype, condition, text = stanza:get_error();
			module:log("error", "push2d refused a bridge message: %s %s: %s", tostring(etype), tostring(condition), tostring(text));
			return true;
		end
		for child in stanza:childtags(nil, xmlns_bridge) do
			if child.name == "push" then
				handle_push(child);
			elseif child.name == "ack" then
				pending:set(child.attr.id, nil);
			elseif child.name == "accounts" then
				handle_accounts(child);
			elseif child.name == "features" then
				local list = {};
				for f in child:childtags("feature") do
					table.insert(list, f.attr.var);
				end
				features = list;
				local announced = child:get_child("limits");
				if announced then set_limits(announced); end
				dedupe_window = tonumber(child.attr["dedupe-window"]) or dedupe_window;
				-- This bridge confirms the notifications it routes, and
				-- speaks protocol version 2 (batched acks: the loop above
				-- takes any number of <ack/>s in one message) if push2d
				-- does; an older push2d lists no versions and gets none.
				local version = nil;
				for v in (child.attr.versions or ""):gmatch("%S+") do
					if v == "2" then version = "2"; end
				end
				module:send(st.message({ from = module.host, to = component, id = id.medium() })
					:tag("bridge", { xmlns = xmlns_bridge, routed = "true", version = version }));
				module:log("debug", "push2d features: %s", table.concat(list, " "));
				replay_on_new_connection();
			end
		end
		return true;
	end
	-- An error reply from a push service to one of our notifications:
	-- only from the service it went to (bare JID) counts.
	local service = stanza.attr.type == "error" and stanza.attr.id and routed:get(stanza.attr.id);
	if service then
		if bare_prepped(stanza.attr.from) ~= service then
			module:log("warn", "error reply to push2 notification %s from %s, not from its push service %s: ignored",
				stanza.attr.id, tostring(stanza.attr.from), service);
			return true;
		end
		local etype, condition, text = stanza:get_error();
		report_delivery_error(stanza.attr.id, stanza.attr.from, etype, condition, text);
		return true;
	end
end), 10);

-- push2d connected (again): replay what it has not acknowledged. The
-- component host may be defined after this VirtualHost, so hook it once it
-- exists.
local function hook_component_host()
	module:context(component):hook("component-authenticated", safely("reconnect", function()
		module:add_timer(0.5, safely("replay", replay_on_new_connection));
	end));
end
if prosody.hosts[component] then
	hook_component_host();
else
	module:hook_global("host-activated", safely("host-activated", function(host)
		if host == component then hook_component_host(); end
	end));
end

-- Unloading: give extended hibernations their normal timeout back.
function module.unload()
	for _, user in pairs(host_sessions) do
		for _, session in pairs(user.sessions) do
			restore_hibernation(session, "module unloaded");
		end
	end
end

-- `push2d check --connect` looks for this feature on the host's
-- disco#info: it tells a host where the bridge runs from any other domain.
module:add_feature(xmlns_bridge);

-- One line at load saying what push2d will get from this host: its JID,
-- and the triggers that the host's modules give (see the README's module
-- table). Modules load in no fixed order, so the line waits until the
-- server has started (or, loaded later, is written at once).
local function log_loaded()
	local is_loaded = modulemanager.is_loaded;
	local found, missing = {}, {};
	for _, t in ipairs({ { "offline", "offline" }, { "archived", "mam" }, { "hibernated, ack-delayed", "smacks" } }) do
		table.insert(is_loaded(module.host, t[2]) and found or missing, t[1] .. " (mod_" .. t[2] .. ")");
	end
	table.insert(found, "groupchat");
	local inline = is_loaded(module.host, "sasl2_bind2") and "inline SASL2/Bind2 enable" or "no inline enable (mod_sasl2_bind2 not loaded)";
	module:log("info", "push2 bridge loaded: push2d component %s; triggers: %s; not available: %s; %s; up to %d buffered events",
		component, table.concat(found, ", "), #missing > 0 and table.concat(missing, ", ") or "none", inline, max_pending);
end
if prosody.start_time then
	log_loaded();
else
	module:hook_global("server-started", safely("loaded", log_loaded));
end
