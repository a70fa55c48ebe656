%%% mod_push2_bridge: the ejabberd side of push2 (Push 2.0, urn:xmpp:push2:0).
%%%
%%% It owns only what needs ejabberd's internals and forwards facts to
%%% push2d, an external component (XEP-0114, ejabberd's ejabberd_service
%%% listener), over the bridge protocol (docs/bridge-protocol.md, namespace
%%% urn:push2:bridge:1), exactly as the Prosody bridge does
%%% (examples/prosody/mod_push2_bridge). All decisions live in push2d.
%%%
%%%   * <enable/> and <disable/> from clients (Push 2.0, and XEP-0357's
%%%     urn:xmpp:push:0, which push2d serves too) go to push2d as IQs; the
%%%     client gets push2d's real answer (result or the exact error).
%%%   * Stanza events go to push2d as messages: offline storage
%%%     (offline_message_hook), the user's archive (store_mam_message,
%%%     with the archive id), the XEP-0198 queue of a pending session
%%%     (groupchat messages there as trigger groupchat, with the user's
%%%     nick in the room: see "Room nicks"). push2d acks each one; unacked events are kept
%%%     (bounded) and replayed when push2d connects again.
%%%   * push2d sends notifications through the bridge, which sends them
%%%     from this host to the push service and passes error replies back.
%%%   * The account's disco#info lists what push2d announced; the host's
%%%     lists urn:push2:bridge:1.
%%%   * A deleted account (remove_user) is reported to push2d, and so is
%%%     one the operator bans or unbans (mod_admin_extra's ban_account and
%%%     unban_account commands, seen through the api_call hook): see
%%%     "Banned accounts".
%%%   * Nothing over push2d's parse limits reaches it: such an <enable/> is
%%%     refused here, such a message is reported by its outline.
%%%
%%% push2's XML stays raw (#xmlel{}): ejabberd's xmpp library has no push2
%%% schema, and the IQ handler decodes nothing (decode_iq_subel/1).
%%% Every hook catches everything: nothing here can crash a c2s process,
%%% and no hook changes what ejabberd does with a stanza (offline storage,
%%% archiving and delivery happen exactly as without this module).
%%%
%%% Build: `make ejabberd-bridge` (docs/ejabberd.md). ejabberd 24.12
%%% (Debian bookworm-backports) and later.
-module(mod_push2_bridge).
-behaviour(gen_mod).
-behaviour(gen_server).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).
-export([start_link/2, init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, code_change/3]).
%% hooks
-export([process_iq/1, decode_iq_subel/1, offline_message/1, offline_message_pre/1, store_mam_message/7,
         local_message/1, filter_packet/1, disco_sm_features/5, disco_local_features/5,
         remove_user/2, api_call/3, component_connected/1, component_disconnected/2,
         user_send_packet/1, user_receive_packet/1, c2s_copy_session/2, sm_remove_connection/3,
         c2s_session_pending/1, c2s_handle_send/3, c2s_handle_cast/2,
         c2s_inline_features/2, c2s_inline_features/3, c2s_handle_bind2_inline/1]).

-include_lib("xmpp/include/xmpp.hrl").
-include("logger.hrl").

-define(NS_PUSH2, <<"urn:xmpp:push2:0">>).
-define(NS_PUSH0, <<"urn:xmpp:push:0">>).
-define(NS_BRIDGE, <<"urn:push2:bridge:1">>).
-define(CONFLICTING, [mod_push, mod_push_keepalive]).

%%%===================================================================
%%% gen_mod
%%%===================================================================

start(Host, Opts) ->
    case conflicts(Host) of
        [] ->
            case gen_mod:start_child(?MODULE, Host, Opts) of
                {ok, _Pid} ->
                    ensure_global_hooks(),
                    {ok, [{iq_handler, ejabberd_sm, ?NS_PUSH2, process_iq},
                          {iq_handler, ejabberd_sm, ?NS_PUSH0, process_iq},
                          {hook, offline_message_hook, offline_message_pre, 48},
                          {hook, offline_message_hook, offline_message, 55},
                          {hook, store_mam_message, store_mam_message, 101},
                          {hook, local_send_to_resource_hook, local_message, 50},
                          {hook, disco_sm_features, disco_sm_features, 60},
                          {hook, disco_local_features, disco_local_features, 60},
                          {hook, remove_user, remove_user, 60},
                          {hook, user_send_packet, user_send_packet, 60},
                          {hook, user_receive_packet, user_receive_packet, 60},
                          {hook, c2s_copy_session, c2s_copy_session, 60},
                          {hook, sm_remove_connection_hook, sm_remove_connection, 60},
                          {hook, c2s_session_pending, c2s_session_pending, 60},
                          {hook, c2s_handle_send, c2s_handle_send, 60},
                          {hook, c2s_handle_cast, c2s_handle_cast, 60},
                          {hook, c2s_handle_bind2_inline, c2s_handle_bind2_inline, 60},
                          {hook, c2s_inline_features, c2s_inline_features, 60}]};
                Err ->
                    Err
            end;
        Mods ->
            Text = conflict_text(Host, Mods),
            ?CRITICAL_MSG("not loading mod_push2_bridge: ~ts", [Text]),
            {error, {conflict, Mods}}
    end.

stop(Host) ->
    case gen_mod:is_loaded_elsewhere(Host, ?MODULE) of
        false -> remove_global_hooks();
        true -> ok
    end,
    gen_mod:stop_child(?MODULE, Host).

reload(Host, NewOpts, _OldOpts) ->
    gen_server:cast(proc(Host), {options, NewOpts}).

depends(_Host, _Opts) -> [].

mod_options(Host) ->
    [{component, <<"push2.", Host/binary>>},
     {iq_timeout, 10},
     {max_pending_events, 10000},
     {max_routed_notifications, 10000},
     {activity_interval, 5},
     {max_hibernation_timeout, 259200}].

mod_opt_type(component) -> econf:host();  % "push2.@HOST@" allowed
mod_opt_type(iq_timeout) -> econf:pos_int();
mod_opt_type(max_pending_events) -> econf:pos_int();
mod_opt_type(max_routed_notifications) -> econf:pos_int();
mod_opt_type(activity_interval) -> econf:non_neg_int();
mod_opt_type(max_hibernation_timeout) -> econf:pos_int().

mod_doc() ->
    #{desc => ["The push2 bridge: Push 2.0 and XEP-0357 served by push2d "
               "(an external component). See push2's docs/ejabberd.md."]}.

%% Modules that answer the same <enable/>: next to the bridge, which one
%% answers is arbitrary and push2d might never see the registration.
%% push2d serves XEP-0357 clients itself.
conflicts(Host) ->
    Configured = try [element(1, T) || T <- ejabberd_option:modules(Host)]
                 catch _:_ -> []
                 end,
    [M || M <- ?CONFLICTING,
          lists:member(M, Configured) orelse gen_mod:is_loaded(Host, M)].

conflict_text(Host, Mods) ->
    Names = lists:join(", ", [atom_to_list(M) || M <- Mods]),
    io_lib:format("~ts enabled on ~ts next to mod_push2_bridge: remove it from the "
                  "modules of ~ts in ejabberd.yml (push2d serves XEP-0357 and Push 2.0 "
                  "clients itself) and restart ejabberd", [Names, Host, Host]).

%% Hooks that are not per host: one registration for every host running
%% the bridge.
ensure_global_hooks() ->
    ejabberd_hooks:add(filter_packet, ?MODULE, filter_packet, 50),
    ejabberd_hooks:add(component_connected, ?MODULE, component_connected, 50),
    ejabberd_hooks:add(component_disconnected, ?MODULE, component_disconnected, 50),
    ejabberd_hooks:add(api_call, ?MODULE, api_call, 50).

remove_global_hooks() ->
    ejabberd_hooks:delete(filter_packet, ?MODULE, filter_packet, 50),
    ejabberd_hooks:delete(component_connected, ?MODULE, component_connected, 50),
    ejabberd_hooks:delete(component_disconnected, ?MODULE, component_disconnected, 50),
    ejabberd_hooks:delete(api_call, ?MODULE, api_call, 50).

proc(Host) -> gen_mod:get_module_proc(Host, ?MODULE).

%% safely runs F, logs whatever it throws and returns Default: no hook of
%% this module may crash the process it runs in (a c2s session, the
%% router).
safely(Name, Default, F) ->
    try F()
    catch Class:Reason:St ->
            ?ERROR_MSG("push2 bridge: ~ts failed: ~p:~p~n~p", [Name, Class, Reason, St]),
            Default
    end.

%%%===================================================================
%%% Per-host state (a gen_server): the event buffer, the routed
%%% notifications, push2d's features and account list.
%%%===================================================================

-record(state, {host :: binary(),
                component :: binary(),
                iq_timeout :: pos_integer(),
                max_pending :: pos_integer(),
                max_routed :: pos_integer(),
                activity_interval :: non_neg_integer(),
                max_hibernation :: pos_integer(),
                connected = false :: boolean(),
                replayed = false :: boolean(),
                features = [] :: [binary()],
                seq = 0 :: non_neg_integer(),
                pending = #{} :: #{binary() => {non_neg_integer(), binary(), xmlel()}},
                order = gb_trees:empty() :: gb_trees:tree(),
                routed = #{} :: #{binary() => {non_neg_integer(), binary()}},
                routed_order = queue:new() :: queue:queue(),
                registered = undefined :: undefined | #{binary() => true},
                building = undefined :: undefined | {binary(), #{binary() => true}},
                accounts = #{} :: #{binary() => binary()},
                activity = #{} :: #{term() => integer()}}).

start_link(Host, Opts) ->
    gen_server:start_link({local, proc(Host)}, ?MODULE, [Host, Opts], []).

init([Host, Opts]) ->
    process_flag(trap_exit, true),
    ets:new(table(Host), [named_table, public, set, {read_concurrency, true}]),
    State = apply_options(#state{host = Host}, Opts),
    Connected = ejabberd_router:is_my_route(State#state.component),
    ?INFO_MSG("push2 bridge loaded on ~ts: push2d component ~ts (~ts); triggers: offline "
              "(mod_offline), archived (mod_mam); up to ~B buffered events",
              [Host, State#state.component,
               if Connected -> "connected"; true -> "not connected" end,
               State#state.max_pending]),
    State1 = State#state{connected = Connected},
    publish(State1),
    {ok, State1}.

apply_options(State, Opts) ->
    State#state{component = gen_mod:get_opt(component, Opts),
                iq_timeout = gen_mod:get_opt(iq_timeout, Opts),
                max_pending = gen_mod:get_opt(max_pending_events, Opts),
                max_routed = gen_mod:get_opt(max_routed_notifications, Opts),
                activity_interval = gen_mod:get_opt(activity_interval, Opts),
                max_hibernation = gen_mod:get_opt(max_hibernation_timeout, Opts)}.

%% The ets table the hooks read without asking the gen_server: the
%% component's JID, push2d's features, whether it is connected, the
%% registration push2d gave each session.
table(Host) -> binary_to_atom(<<"mod_push2_bridge_", Host/binary>>, utf8).

lookup(Host, Key, Default) ->
    try ets:lookup(table(Host), Key) of
        [{_, V}] -> V;
        [] -> Default
    catch _:_ -> Default
    end.

handle_call(features, _From, State) ->
    {reply, State#state.features, State};
handle_call(_Req, _From, State) ->
    {reply, {error, badarg}, State}.

handle_cast(Msg, State) ->
    try do_cast(Msg, State) of
        #state{} = New -> publish(New), {noreply, New}
    catch Class:Reason:St ->
            ?ERROR_MSG("push2 bridge: ~p failed: ~p:~p~n~p", [element(1, Msg), Class, Reason, St]),
            {noreply, State}
    end.

handle_info(replay, State) ->
    {noreply, replay_once(State)};
handle_info(_Info, State) ->
    {noreply, State}.

terminate(_Reason, #state{host = Host}) ->
    catch ets:delete(table(Host)),
    ok.

code_change(_Old, State, _Extra) -> {ok, State}.

publish(#state{host = Host} = State) ->
    catch ets:insert(table(Host), [{component, State#state.component},
                                   {connected, State#state.connected},
                                   {features, State#state.features},
                                   {iq_timeout, State#state.iq_timeout},
                                   {max_hibernation, State#state.max_hibernation}]).

do_cast({options, Opts}, State) ->
    apply_options(State, Opts);
do_cast({report, Trigger, Account, El, Extra}, State) ->
    {El1, Extra1} = limit_event(State#state.host, Account, El, Extra),
    report(Trigger, Account, El1, Extra1, State);
do_cast({from_push2d, Els}, State) ->
    lists:foldl(fun handle_bridge_el/2, State, Els);
do_cast(connected, State) ->
    erlang:send_after(500, self(), replay),
    State#state{connected = true, replayed = false};
do_cast(disconnected, State) ->
    State#state{connected = false, replayed = false};
do_cast({account, Account, AState}, State) ->
    Accounts = maps:put(Account, AState, State#state.accounts),
    send_account_change(Account, AState, State),
    State#state{accounts = Accounts};
do_cast({account_ban, Account, LUser, LHost}, State) ->
    {AState, What} = case banned(LUser, LHost) of
                         true -> {<<"disabled">>, "banned"};
                         false -> {<<"enabled">>, "not banned"}
                     end,
    ?INFO_MSG("account ~ts ~ts (ban_account/unban_account): telling push2d", [Account, What]),
    do_cast({account, Account, AState}, State);
do_cast({account_done, Account, AState}, State) ->
    case maps:get(Account, State#state.accounts, undefined) of
        AState -> State#state{accounts = maps:remove(Account, State#state.accounts)};
        _ -> State
    end;
do_cast({activity, Account, Reg}, State) ->
    activity(Account, Reg, State);
do_cast(_, State) ->
    State.

%%%===================================================================
%%% Events (docs/bridge-protocol.md "Stanza events")
%%%===================================================================

%% While an "enabled" change is sent and not yet answered, the account
%% counts as having registrations (push2d drops the event if it has none):
%% push2d sends <accounts><add/> for it just before its result, and a
%% message stored in between would otherwise not be reported (as the
%% Prosody bridge does).
has_registrations(Account, #state{registered = undefined}) -> is_binary(Account);
has_registrations(Account, #state{registered = R, accounts = A}) ->
    maps:is_key(Account, R) orelse maps:get(Account, A, undefined) =:= <<"enabled">>.

new_id() ->
    %% 18 random bytes (OTP 25 has no url-safe base64/2): unguessable.
    binary:encode_hex(crypto:strong_rand_bytes(18)).

report(Trigger, Account, Stanza, Extra, State) ->
    case has_registrations(Account, State) of
        false -> State;
        true ->
            Id = new_id(),
            Attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"id">>, Id}, {<<"account">>, Account},
                     {<<"trigger">>, Trigger}]
                ++ [{K, V} || {K, V} <- [{<<"archive-id">>, maps:get(archive_id, Extra, undefined)},
                                         {<<"archive-by">>, maps:get(archive_by, Extra, undefined)},
                                         {<<"nick">>, maps:get(nick, Extra, undefined)},
                                         {<<"truncated">>, maps:get(truncated, Extra, undefined)}],
                              is_binary(V)],
            Live = [#xmlel{name = <<"only">>, attrs = [{<<"id">>, R}]}
                    || R <- maps:get(only, Extra, [])]
                ++ [#xmlel{name = <<"live">>, attrs = [{<<"id">>, R}]}
                    || R <- maps:get(live, Extra, [])],
            Event = #xmlel{name = <<"event">>, attrs = Attrs, children = Live ++ [Stanza]},
            Seq = State#state.seq + 1,
            State1 = State#state{seq = Seq,
                                 pending = maps:put(Id, {Seq, Account, Event}, State#state.pending),
                                 order = gb_trees:insert(Seq, Id, State#state.order)},
            State2 = trim_pending(State1),
            case State2#state.connected of
                true -> send_to_push2d(Id, Event, State2);
                false -> ok
            end,
            State2
    end.

trim_pending(#state{max_pending = Max, order = Order} = State) ->
    case gb_trees:size(Order) > Max of
        false -> State;
        true ->
            {_Seq, Id, Order1} = gb_trees:take_smallest(Order),
            ?WARNING_MSG("push2 event buffer full (~B): dropping the oldest unacked event ~ts",
                         [Max, Id]),
            trim_pending(State#state{order = Order1,
                                     pending = maps:remove(Id, State#state.pending)})
    end.

ack(Id, State) ->
    case maps:take(Id, State#state.pending) of
        {{Seq, _, _}, Pending} ->
            State#state{pending = Pending, order = gb_trees:delete_any(Seq, State#state.order)};
        error -> State
    end.

send_to_push2d(Id, El, #state{host = Host, component = Comp}) ->
    ejabberd_router:route(#message{from = jid:make(Host), to = jid:make(Comp),
                                   id = Id, sub_els = [El]}).

send_to_push2d(El, State) -> send_to_push2d(new_id(), El, State).

%% Send every unacked event again, oldest first, once per connection of
%% push2d: on its <features/> or half a second after the component
%% connected, whichever comes first.
replay_once(#state{connected = true, replayed = false} = State) ->
    Events = [element(3, maps:get(Id, State#state.pending)) || Id <- gb_trees:values(State#state.order)],
    lists:foreach(fun(#xmlel{attrs = A} = Ev) ->
                          send_to_push2d(proplists:get_value(<<"id">>, A), Ev, State)
                  end, Events),
    case Events of
        [] -> ok;
        _ -> ?INFO_MSG("push2d is back: replayed ~B unacked events", [length(Events)])
    end,
    maps:foreach(fun(Account, AState) -> send_account_change(Account, AState, State) end,
                 State#state.accounts),
    State#state{replayed = true};
replay_once(State) ->
    State.

%%%===================================================================
%%% What push2d sends (messages to the host)
%%%===================================================================

handle_bridge_el(#xmlel{name = Name, attrs = Attrs} = El, State) ->
    case proplists:get_value(<<"xmlns">>, Attrs) of
        ?NS_BRIDGE -> handle_bridge(Name, El, State);
        _ -> State
    end;
handle_bridge_el(_, State) ->
    State.

handle_bridge(<<"ack">>, El, State) ->
    ack(fxml:get_tag_attr_s(<<"id">>, El), State);
handle_bridge(<<"features">>, El, State) ->
    Features = [fxml:get_tag_attr_s(<<"var">>, F)
                || #xmlel{name = <<"feature">>} = F <- El#xmlel.children],
    %% This bridge confirms the notifications it routes, and speaks
    %% versions 1 and 2 (batched acks: it takes every <ack/> of a message).
    Versions = binary:split(fxml:get_tag_attr_s(<<"versions">>, El), <<" ">>, [global, trim_all]),
    Version = case lists:member(<<"2">>, Versions) of
                  true -> [{<<"version">>, <<"2">>}];
                  false -> []
              end,
    send_to_push2d(#xmlel{name = <<"bridge">>,
                          attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"routed">>, <<"true">>} | Version]},
                   State),
    set_limits(State, El),
    replay_once(State#state{features = Features, connected = true});
handle_bridge(<<"accounts">>, El, State) ->
    handle_accounts(El, State);
handle_bridge(<<"push">>, El, State) ->
    handle_push(El, State);
handle_bridge(_, _El, State) ->
    State.

%% push2d's <accounts/>: a chunk of the whole list, or changes.
handle_accounts(El, State) ->
    case fxml:get_tag_attr_s(<<"list">>, El) of
        <<>> ->
            lists:foldl(
              fun(#xmlel{name = N} = C, S) when N == <<"add">>; N == <<"remove">> ->
                      J = fxml:get_tag_attr_s(<<"jid">>, C),
                      Change = fun(M) when N == <<"add">> -> maps:put(J, true, M);
                                  (M) -> maps:remove(J, M)
                               end,
                      S1 = case S#state.registered of
                               undefined -> S;
                               R -> S#state{registered = Change(R)}
                           end,
                      case S1#state.building of
                          {L, B} -> S1#state{building = {L, Change(B)}};
                          undefined -> S1
                      end;
                 (_, S) -> S
              end, State, El#xmlel.children);
        List ->
            Building = case State#state.building of
                           {List, B} -> B;
                           _ -> #{}
                       end,
            Building1 = lists:foldl(fun(#xmlel{name = <<"account">>} = A, M) ->
                                            maps:put(fxml:get_tag_attr_s(<<"jid">>, A), true, M);
                                       (_, M) -> M
                                    end, Building, El#xmlel.children),
            case fxml:get_tag_attr_s(<<"last">>, El) of
                <<"true">> ->
                    %% A whole list: drop the buffered events of others.
                    Drop = [Id || {Id, {_, Account, _}} <- maps:to_list(State#state.pending),
                                  not maps:is_key(Account, Building1)],
                    S = lists:foldl(fun ack/2, State, Drop),
                    ?INFO_MSG("push2d: ~B accounts with registrations; ~B buffered events of others dropped",
                              [maps:size(Building1), length(Drop)]),
                    S#state{registered = Building1, building = undefined};
                _ ->
                    State#state{building = {List, Building1}}
            end
    end.

%% A notification: sent from this host to the push service. The bridge
%% remembers its id and service, so that only that service's error reply
%% is passed back.
handle_push(#xmlel{children = Children} = Push, #state{host = Host} = State) ->
    case [C || #xmlel{} = C <- Children] of
        [#xmlel{name = <<"message">>} = M | _] ->
            Pkt = xmpp:decode(M, ?NS_CLIENT, [ignore_els]),
            Id = xmpp:get_id(Pkt),
            To = xmpp:get_to(Pkt),
            ejabberd_router:route(xmpp:set_from(Pkt, jid:make(Host))),
            State1 = remember_routed(Id, To, State),
            confirm_routed(Id, State1),
            wake(fxml:get_tag_attr_s(<<"account">>, Push), fxml:get_tag_attr_s(<<"registration">>, Push), Host),
            State1;
        [#xmlel{name = <<"iq">>} = I | _] ->
            publish_iq(xmpp:decode(I, ?NS_CLIENT, [ignore_els]), State),
            State;
        _ ->
            ?WARNING_MSG("push2d sent a <push/> without a message: ~ts", [fxml:element_to_binary(Push)]),
            State
    end.

%% An XEP-0357 publish: from the user's bare JID (which push2d sets), and
%% the app server's IQ answer says whether it took it.
publish_iq(#iq{from = #jid{lserver = Host, lresource = <<>>, luser = U}, id = Id, to = To} = IQ,
           #state{host = Host, iq_timeout = T} = State) when U /= <<>> ->
    Comp = State#state.component,
    ejabberd_router:route_iq(
      IQ,
      fun(Reply) ->
              safely("publish-answer", ok,
                     fun() ->
                             El = case Reply of
                                      #iq{type = result} ->
                                          #xmlel{name = <<"delivered">>,
                                                 attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"id">>, Id},
                                                          {<<"from">>, jid:encode(To)}]};
                                      #iq{type = error} = R ->
                                          delivery_error(Id, jid:encode(To), xmpp:get_error(R));
                                      _ ->
                                          delivery_error(Id, jid:encode(To), timeout)
                                  end,
                             ejabberd_router:route(#message{from = jid:make(Host), to = jid:make(Comp),
                                                            id = new_id(), sub_els = [El]})
                     end)
      end, undefined, T * 1000),
    confirm_routed(Id, State);
publish_iq(#iq{from = From}, _State) ->
    ?WARNING_MSG("push2d sent a publish from ~ts; not sent", [jid:encode(From)]).

delivery_error(Id, From, Err) ->
    {Type, Cond, Text} =
        case Err of
            #stanza_error{type = T, reason = R, text = Txt} ->
                {atom_to_binary(T, utf8), reason_name(R), xmpp:get_text(Txt)};
            _ ->
                {<<"wait">>, <<"remote-server-timeout">>, <<>>}
        end,
    #xmlel{name = <<"delivery-error">>,
           attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"id">>, Id}, {<<"from">>, From},
                    {<<"type">>, Type}, {<<"condition">>, Cond}],
           children = [{xmlcdata, Text} || Text /= <<>>]}.

reason_name(undefined) -> <<"undefined-condition">>;
reason_name({_, _}) -> <<"gone">>;
reason_name(R) when is_atom(R) -> atom_to_binary(R, utf8).

remember_routed(<<>>, _To, State) -> State;
remember_routed(Id, To, #state{max_routed = Max} = State) ->
    Routed = maps:put(Id, jid:encode(jid:remove_resource(jid:tolower(To))), State#state.routed),
    Order = queue:in(Id, State#state.routed_order),
    {Routed1, Order1} = trim_routed(Routed, Order, Max),
    ets:insert(table(State#state.host), {{routed, Id}, maps:get(Id, Routed1, undefined)}),
    State#state{routed = Routed1, routed_order = Order1}.

trim_routed(Routed, Order, Max) ->
    case queue:len(Order) > Max of
        false -> {Routed, Order};
        true ->
            {{value, Old}, Order1} = queue:out(Order),
            trim_routed(maps:remove(Old, Routed), Order1, Max)
    end.

%% Routing confirmations: the notification was handed to ejabberd's
%% router (docs/bridge-protocol.md "Routing confirmations").
confirm_routed(<<>>, _State) -> ok;
confirm_routed(Id, State) ->
    send_to_push2d(#xmlel{name = <<"routed">>, attrs = [{<<"xmlns">>, ?NS_BRIDGE}],
                          children = [#xmlel{name = <<"n">>, attrs = [{<<"id">>, Id}]}]},
                   State).

%%%===================================================================
%%% Accounts (docs/bridge-protocol.md "Accounts")
%%%===================================================================

send_account_change(Account, AState, #state{connected = true, host = Host, component = Comp, iq_timeout = T}) ->
    Proc = proc(Host),
    IQ = #iq{type = set, from = jid:make(Host), to = jid:make(Comp), id = new_id(),
             sub_els = [#xmlel{name = <<"account">>,
                               attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"account">>, Account},
                                        {<<"state">>, AState}]}]},
    ejabberd_router:route_iq(
      IQ,
      fun(#iq{type = result}) ->
              gen_server:cast(Proc, {account_done, Account, AState});
         (#iq{type = error} = R) ->
              case xmpp:get_error(R) of
                  #stanza_error{type = wait} -> ok; % kept: sent again on the next connection
                  E ->
                      ?ERROR_MSG("push2d refused ~ts of ~ts: ~p", [AState, Account, E]),
                      gen_server:cast(Proc, {account_done, Account, AState})
              end;
         (_) -> ok
      end, undefined, T * 1000);
send_account_change(_, _, _) ->
    ok.

remove_user(User, Server) ->
    safely("remove_user", ok,
           fun() ->
                   Account = <<User/binary, "@", Server/binary>>,
                   ?INFO_MSG("account ~ts deleted: telling push2d", [Account]),
                   gen_server:cast(proc(Server), {account, Account, <<"deleted">>})
           end).

%%%===================================================================
%%% Banned accounts
%%%===================================================================
%%
%% ejabberd's disabled accounts are mod_admin_extra's banned ones, and it
%% has no hook for a ban. Every ejabberd command (ejabberdctl,
%% mod_http_api, the web admin, mod_adhoc_api) goes through
%% ejabberd_commands, which runs the global api_call hook with the
%% command's module, function and arguments right BEFORE running it, in
%% the caller's process. So the hook only notes what the command would
%% change and starts a watcher that waits, at most ?BAN_WATCH_MS, for the
%% change to be there; only then is push2d told (the same kept-until-result
%% path as a deletion). A command that does nothing (the account is
%% already banned, mod_private is not loaded, no such account) or fails
%% therefore tells push2d nothing. For a ban or unban the per-host
%% gen_server reads the ban once more when it sends, so that a ban and an
%% unban in quick succession leave push2d with the account's state at the
%% end, whichever watcher is first.
%%
%%   ban_account (API version 2, ban_account_v2/3; what ejabberdctl and
%%   /api/ban_account run): the ban is kept in the account's private
%%   storage (mod_private), with the old password  -> disabled once
%%   mod_admin_extra:get_ban_details/2 has a bandate;
%%   unban_account/2: the old password back       -> enabled once the ban
%%   details are gone;
%%   ban_account (API version 1, ban_account/3): kicks the sessions and sets
%%   a random password, nothing kept and no undo   -> disabled once the
%%   stored password changed.
%%
%% Only accounts of a host running the bridge count.

-define(BAN_WATCH_MS, 10000).
-define(BAN_POLL_MS, 50).

api_call(Module, Function, Args) ->
    safely("api_call", ok, fun() -> account_command(Module, Function, Args) end).

account_command(mod_admin_extra, ban_account_v2, [User, Host, _Reason]) ->
    watch_ban(User, Host, true);
account_command(mod_admin_extra, unban_account, [User, Host]) ->
    watch_ban(User, Host, false);
account_command(mod_admin_extra, ban_account, [User, Host, _Reason]) ->
    watch_password(User, Host);
account_command(_, _, _) ->
    ok.

%% {LUser, LHost} of an existing account on a host running the bridge, or
%% false.
bridged_account(User, Host) when is_binary(User), is_binary(Host) ->
    case {jid:nodeprep(User), jid:nameprep(Host)} of
        {LUser, LHost} when is_binary(LUser), LUser /= <<>>, is_binary(LHost) ->
            case gen_mod:is_loaded(LHost, ?MODULE)
                andalso ejabberd_auth:user_exists(LUser, LHost) of
                true -> {LUser, LHost};
                false -> false
            end;
        _ -> false
    end;
bridged_account(_, _) ->
    false.

%% Whether mod_admin_extra has a ban for the account (its is_banned/2,
%% which it does not export).
banned(LUser, LHost) ->
    case lists:keyfind("bandate", 1, mod_admin_extra:get_ban_details(LUser, LHost)) of
        {_, BanDate} when BanDate /= <<>> -> true;
        _ -> false
    end.

watch_ban(User, Host, Banned) ->
    case bridged_account(User, Host) of
        {LUser, LHost} ->
            case gen_mod:is_loaded(LHost, mod_private) andalso banned(LUser, LHost) /= Banned of
                true ->
                    watch(LUser, LHost, ban, fun() -> banned(LUser, LHost) == Banned end);
                false -> ok % the command changes nothing
            end;
        false -> ok
    end.

watch_password(User, Host) ->
    case bridged_account(User, Host) of
        {LUser, LHost} ->
            Before = ejabberd_auth:get_password_s(LUser, LHost),
            watch(LUser, LHost, <<"disabled">>,
                  fun() -> ejabberd_auth:get_password_s(LUser, LHost) /= Before end);
        false -> ok
    end.

%% watch waits, in a process of its own, until Done() says the command
%% took effect, then tells the host's gen_server: State is the account's
%% new state, or ban (the gen_server reads the ban: disabled or enabled).
watch(LUser, LHost, State, Done) ->
    Deadline = erlang:monotonic_time(millisecond) + ?BAN_WATCH_MS,
    spawn(fun() -> safely("ban watcher", ok, fun() -> await(LUser, LHost, State, Done, Deadline) end) end),
    ok.

await(LUser, LHost, State, Done, Deadline) ->
    Account = <<LUser/binary, "@", LHost/binary>>,
    case Done() of
        true when State == ban ->
            gen_server:cast(proc(LHost), {account_ban, Account, LUser, LHost});
        true ->
            ?INFO_MSG("account ~ts banned (ban_account, API version 1): telling push2d", [Account]),
            gen_server:cast(proc(LHost), {account, Account, State});
        false ->
            case erlang:monotonic_time(millisecond) >= Deadline of
                true ->
                    ?DEBUG("account ~ts: the ban command changed nothing within ~B ms", [Account, ?BAN_WATCH_MS]);
                false ->
                    timer:sleep(?BAN_POLL_MS),
                    await(LUser, LHost, State, Done, Deadline)
            end
    end.

%%%===================================================================
%%% Hooks
%%%===================================================================

account_of(#jid{luser = U, lserver = S}) -> <<U/binary, "@", S/binary>>.

%% The stanza as it goes inside an event: a jabber:client <message/>.
embed(Pkt) ->
    #xmlel{attrs = Attrs} = El = xmpp:encode(Pkt, ?NS_CLIENT),
    El#xmlel{attrs = [{<<"xmlns">>, ?NS_CLIENT} | proplists:delete(<<"xmlns">>, Attrs)]}.

reportable(#message{type = T} = Pkt) when T /= error ->
    xmpp:get_subtag(Pkt, #mam_result{xmlns = ?NS_MAM_2}) == false;
reportable(_) ->
    false.

%% The registration ids of the account's connected sessions (their
%% resources, and the ids push2d gave their enables): those devices see
%% the stanza themselves.
live_registrations(#jid{luser = U, lserver = S}) ->
    Resources = ejabberd_sm:get_user_resources(U, S),
    lists:usort(Resources ++
                    [R || Res <- Resources, R <- [lookup(S, {registration, U, Res}, undefined)],
                          is_binary(R)]).

%% One event per stanza (docs/bridge-protocol.md "One event per stanza"):
%% a message no session can take is archived by mod_mam from
%% offline_message_hook (49) and then stored offline (50). The bridge marks
%% it before (48) in the process dictionary (the hooks run one after the
%% other in this process), store_mam_message reports nothing for it, and
%% the offline event (55) carries the archive id.
offline_message_pre({_Action, #message{to = To, id = Id}} = Acc) ->
    put(push2_offline, {jid:tolower(To), Id}),
    Acc;
offline_message_pre(Acc) ->
    Acc.

being_offlined(#message{to = To, id = Id}) ->
    get(push2_offline) == {jid:tolower(To), Id}.

%% offline_message_hook (after mod_mam, 49, and mod_offline, 50): no
%% session can take the message. The accumulator is returned unchanged.
offline_message({_Action, #message{to = To} = Pkt} = Acc) ->
    erase(push2_offline),
    safely("offline", ok,
           fun() ->
                   case reportable(Pkt) of
                       true ->
                           Extra = archive_extra(Pkt, To),
                           gen_server:cast(proc(To#jid.lserver),
                                           {report, <<"offline">>, account_of(To), embed(Pkt), Extra});
                       false -> ok
                   end
           end),
    Acc;
offline_message(Acc) ->
    Acc.

archive_extra(Pkt, To) ->
    case xmpp:get_meta(Pkt, stanza_id, undefined) of
        ID when is_integer(ID) ->
            #{archive_id => integer_to_binary(ID), archive_by => account_of(To)};
        _ -> #{}
    end.

%% store_mam_message (after mod_mam's own, 100): the user's archive took
%% a message the user received. Connected sessions are listed as <live/>.
store_mam_message(#message{to = To} = Pkt, LUser, LServer, _Peer, _Nick, chat, recv) ->
    safely("archived", ok,
           fun() ->
                   case reportable(Pkt) andalso To#jid.luser == LUser andalso To#jid.lserver == LServer
                       andalso not being_offlined(Pkt) andalso get(push2_pending) /= true
                       andalso gen_mod:is_loaded(LServer, ?MODULE) of
                       true ->
                           Extra = maps:put(live, live_registrations(To), archive_extra(Pkt, To)),
                           gen_server:cast(proc(LServer),
                                           {report, <<"archived">>, account_of(To), embed(Pkt), Extra});
                       false -> ok
                   end
           end),
    Pkt;
store_mam_message(Pkt, _LUser, _LServer, _Peer, _Nick, _Type, _Dir) ->
    Pkt.

%% Messages to the host (local_send_to_resource_hook, before ejabberd's
%% bounce at 100): push2d's are the bridge's, and are not bounced.
local_message(#message{from = From, to = #jid{lserver = Host}, sub_els = Els}) ->
    safely("message", ok,
           fun() ->
                   case jid:encode(jid:remove_resource(From)) == lookup(Host, component, undefined) of
                       true ->
                           gen_server:cast(proc(Host), {from_push2d, Els}),
                           stop;
                       false -> ok
                   end
           end);
local_message(_) ->
    ok.

%% Error replies to the host are dropped by ejabberd_local before any hook
%% runs, so an error reply from a push service to one of our notifications
%% is caught here, in the router's filter: only from the service it went
%% to (bare JID) counts.
filter_packet(#message{type = error, id = Id, from = From,
                       to = #jid{luser = <<>>, lresource = <<>>, lserver = Host}} = Pkt) when Id /= <<>> ->
    safely("delivery-error", Pkt,
           fun() ->
                   case lookup(Host, {routed, Id}, undefined) of
                       undefined -> Pkt;
                       Service ->
                           case jid:encode(jid:remove_resource(jid:tolower(From))) of
                               Service ->
                                   El = delivery_error(Id, jid:encode(From), xmpp:get_error(Pkt)),
                                   ejabberd_router:route(
                                     #message{from = jid:make(Host),
                                              to = jid:make(lookup(Host, component, <<>>)),
                                              id = new_id(), sub_els = [El]}),
                                   drop;
                               Other ->
                                   ?WARNING_MSG("error reply to push2 notification ~ts from ~ts, not from "
                                                "its push service ~ts: ignored", [Id, Other, Service]),
                                   drop
                           end
                   end
           end);
filter_packet(Pkt) ->
    Pkt.

component_connected(Comp) ->
    safely("component_connected", ok, fun() -> each_host_of(Comp, connected) end).

component_disconnected(Comp, _Reason) ->
    safely("component_disconnected", ok, fun() -> each_host_of(Comp, disconnected) end).

each_host_of(Comp, Msg) ->
    lists:foreach(fun(Host) ->
                          case lookup(Host, component, undefined) of
                              Comp -> gen_server:cast(proc(Host), Msg);
                              _ -> ok
                          end
                  end, ejabberd_option:hosts()).

%% disco#info of the account: what push2d announced. Nothing before that:
%% advertising a service that cannot answer would make clients register
%% into a void.
disco_sm_features(empty, From, To, Node, Lang) ->
    disco_sm_features({result, []}, From, To, Node, Lang);
disco_sm_features({result, Features} = Acc, _From, #jid{lserver = Host}, <<>>, _Lang) ->
    safely("disco", Acc, fun() -> {result, Features ++ lookup(Host, features, [])} end);
disco_sm_features(Acc, _From, _To, _Node, _Lang) ->
    Acc.

%% The host's disco#info lists urn:push2:bridge:1 from the moment the
%% bridge loads (push2d check --connect looks for it).
disco_local_features(empty, From, To, Node, Lang) ->
    disco_local_features({result, []}, From, To, Node, Lang);
disco_local_features({result, Features}, _From, _To, <<>>, _Lang) ->
    {result, [?NS_BRIDGE | Features]};
disco_local_features(Acc, _From, _To, _Node, _Lang) ->
    Acc.

%% A session ended: forget the registration push2d gave it.
sm_remove_connection(_SID, #jid{luser = U, lserver = S, lresource = R}, _Info) ->
    safely("sm_remove_connection", ok, fun() -> ets:delete(table(S), {registration, U, R}) end).

%% Session activity, for <grace/>: a message with a body or a chat state
%% sent by one of the user's clients.
user_send_packet({#message{type = T, from = #jid{lserver = Host} = From} = Pkt, C2SState} = Acc) when T /= error ->
    safely("activity", ok,
           fun() ->
                   case has_chatstate(Pkt) orelse Pkt#message.body /= [] of
                       true ->
                           gen_server:cast(proc(Host), {activity, account_of(From), registration_id(From)});
                       false -> ok
                   end
           end),
    _ = C2SState,
    Acc;
user_send_packet({#presence{to = #jid{lresource = Nick} = To, type = T} = Pkt, C2SState} = Acc)
  when Nick /= <<>>, (T == available orelse T == unavailable) ->
    safely("nick-out", Acc,
           fun() ->
                   Room = jid:remove_resource(jid:tolower(To)),
                   Nicks = maps:get(push2_nicks, C2SState, #{}),
                   Nicks1 = case T of
                                %% A join (it carries the MUC <x/>) or a
                                %% nick change in a room we know.
                                available ->
                                    case xmpp:has_subtag(Pkt, #muc{}) orelse maps:is_key(Room, Nicks) of
                                        true -> maps:put(Room, Nick, Nicks);
                                        false -> Nicks
                                    end;
                                unavailable ->
                                    maps:remove(Room, Nicks)
                            end,
                   {Pkt, set_nicks(C2SState, Nicks1)}
           end);
user_send_packet(Acc) ->
    Acc.

%%%===================================================================
%%% Room nicks (mod_muc or any XEP-0045 service): the user's nick in each
%%% room the session joined, kept in the session's state (push2_nicks,
%%% room bare JID => nick), learnt from the presence the client sends to
%%% room/nick and from the room's self-presence (status 110), cleared
%%% when the user leaves, is removed or gets an error from the room.
%%% Events about stanzas from a room carry it (nick='...'): push2d
%%% matches mentions on it. Kept per session, the map ends with the
%%% session and follows it on resumption (c2s_copy_session).
%%%===================================================================

set_nicks(State, Nicks) when map_size(Nicks) == 0 -> maps:remove(push2_nicks, State);
set_nicks(State, Nicks) -> State#{push2_nicks => Nicks}.

%% Presence from a room to the user: the room's word on the nick wins (it
%% may change the nick the client asked for).
user_receive_packet({#presence{from = #jid{lresource = Nick} = From, type = T} = Pkt, C2SState} = Acc)
  when Nick /= <<>> ->
    safely("nick-in", Acc,
           fun() ->
                   Room = jid:remove_resource(jid:tolower(From)),
                   Nicks = maps:get(push2_nicks, C2SState, #{}),
                   Nicks1 = case T of
                                error -> maps:remove(Room, Nicks);
                                _ -> nick_from_room(T, Room, Nick, xmpp:get_subtag(Pkt, #muc_user{}), Nicks)
                            end,
                   case Nicks1 of
                       Nicks -> Acc;
                       _ -> {Pkt, set_nicks(C2SState, Nicks1)}
                   end
           end);
user_receive_packet(Acc) ->
    Acc.

nick_from_room(T, Room, Nick, #muc_user{status_codes = Codes, items = Items}, Nicks) ->
    case lists:member(110, Codes) of
        false -> Nicks;
        true when T == available -> maps:put(Room, Nick, Nicks);
        true when T == unavailable ->
            case {lists:member(303, Codes), Items} of
                {true, [#muc_item{nick = New} | _]} when New /= <<>> ->
                    maps:put(Room, New, Nicks); % nick change
                _ ->
                    case maps:get(Room, Nicks, undefined) of
                        Nick -> maps:remove(Room, Nicks);
                        _ -> Nicks
                    end
            end;
        true -> Nicks
    end;
nick_from_room(_T, _Room, _Nick, _NotMUC, Nicks) ->
    Nicks.

%% A resumed session continues the old one: its room nicks too.
c2s_copy_session(State, #{push2_nicks := Nicks}) ->
    State#{push2_nicks => Nicks};
c2s_copy_session(State, _Old) ->
    State.

%% The nick an event about Pkt carries: the session's in the room Pkt
%% comes from (groupchat, or a private message from an occupant).
nick_for(#{push2_nicks := Nicks}, #message{from = #jid{} = From}) ->
    maps:get(jid:remove_resource(jid:tolower(From)), Nicks, undefined);
nick_for(_State, _Pkt) ->
    undefined.

has_chatstate(#message{sub_els = Els}) ->
    lists:any(fun(#chatstate{}) -> true;
                 (#xmlel{attrs = A}) -> proplists:get_value(<<"xmlns">>, A) == ?NS_CHATSTATES;
                 (_) -> false
              end, Els).

%% At most one report per session every activity_interval seconds.
activity(Account, Reg, #state{connected = true, activity_interval = I} = State) ->
    Now = erlang:monotonic_time(second),
    Key = {Account, Reg},
    case maps:get(Key, State#state.activity, undefined) of
        Last when is_integer(Last), Now - Last < I -> State;
        _ ->
            send_to_push2d(#xmlel{name = <<"activity">>,
                                  attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"account">>, Account},
                                           {<<"registration">>, Reg}]}, State),
            State#state{activity = maps:put(Key, Now, State#state.activity)}
    end;
activity(_, _, State) ->
    State.

%% The registration id of a session: its resource.
registration_id(#jid{lresource = R}) -> R.

%%%===================================================================
%%% enable / disable (IQs to the user's own bare JID)
%%%===================================================================

%% The IQ's payload stays the raw element the client sent: push2d parses
%% it (ejabberd's xmpp library has no push2 schema).
decode_iq_subel(El) -> El.

process_iq(#iq{type = set, from = #jid{luser = U, lserver = S} = From, to = #jid{luser = U, lserver = S},
               sub_els = [#xmlel{name = Name} = Payload]} = IQ)
  when Name == <<"enable">>; Name == <<"disable">> ->
    safely("enable", xmpp:make_error(IQ, xmpp:err_internal_server_error()),
           fun() ->
                   case lookup(S, connected, false) of
                       false ->
                           xmpp:make_error(IQ, xmpp:err_service_unavailable(
                                                 <<"the push service is temporarily unavailable">>, <<"en">>));
                       true ->
                           case refuse_over_limits(S, Payload) of
                               ok ->
                                   ask_push2d(Name, From, Payload, IQ),
                                   ignore;
                               {refused, Text} ->
                                   %% Without the request: xmpp:make_error
                                   %% would echo it, over the limits too.
                                   xmpp:make_error(IQ#iq{sub_els = []},
                                                   xmpp:err_policy_violation(Text, <<"en">>))
                           end
                   end
           end);
process_iq(#iq{type = get} = IQ) ->
    xmpp:make_error(IQ, xmpp:err_not_allowed());
process_iq(IQ) ->
    xmpp:make_error(IQ, xmpp:err_bad_request()).

ask_push2d(Kind, #jid{luser = U, lserver = S, lresource = R} = From, Payload, IQ) ->
    Comp = lookup(S, component, <<>>),
    T = lookup(S, iq_timeout, 10),
    Req = #iq{type = set, from = jid:make(S), to = jid:make(Comp), id = new_id(),
              sub_els = [#xmlel{name = Kind,
                                attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"account">>, account_of(From)},
                                         {<<"registration">>, registration_id(From)}],
                                children = [Payload]}]},
    ejabberd_router:route_iq(
      Req,
      fun(Reply) ->
              safely("enable-answer", ok,
                     fun() ->
                             Answer =
                                 case Reply of
                                     #iq{type = result, sub_els = Els} ->
                                         applied(Kind, S, U, R, Els),
                                         xmpp:make_iq_result(IQ);
                                     #iq{type = error} = E ->
                                         case xmpp:get_error(E) of
                                             #stanza_error{} = Err -> xmpp:make_error(IQ, Err);
                                             _ -> xmpp:make_error(IQ, xmpp:err_internal_server_error())
                                         end;
                                     timeout ->
                                         xmpp:make_error(IQ, xmpp:err_remote_server_timeout())
                                 end,
                             ejabberd_router:route(Answer)
                     end)
      end, undefined, T * 1000).

%% push2d took the enable: remember the id it gave the registration (for
%% XEP-0357 it is not the session's resource), for the <live/> lists.
applied(<<"enable">>, S, U, R, Els) ->
    Id = case [fxml:get_tag_attr_s(<<"id">>, E) || #xmlel{name = <<"registered">>} = E <- Els] of
             [I | _] when I /= <<>> -> I;
             _ -> R
         end,
    ets:insert(table(S), {{registration, U, R}, Id});
applied(_, S, U, R, _Els) ->
    ets:delete(table(S), {registration, U, R}).

%%%===================================================================
%%% Hibernated sessions (XEP-0198 pending, mod_stream_mgmt)
%%%===================================================================

%% The registration ids push2d knows this session by.
session_registrations(#jid{luser = U, lserver = S, lresource = R}) ->
    case lookup(S, {registration, U, R}, undefined) of
        undefined -> [R];
        R -> [R];
        Given -> [R, Given]
    end.

%% The session lost its connection and waits for resumption. Its unacked
%% queue may hold messages the device never saw: each is reported for this
%% session's registrations (<only/>). Everything queued from now on is
%% reported as it comes (c2s_handle_send). A session whose registration
%% push2d accepted waits up to max_hibernation_timeout instead of
%% mod_stream_mgmt's resume_timeout, until its first push.
c2s_session_pending(#{jid := JID} = State) ->
    safely("hibernation-start", State,
           fun() ->
                   %% This process is the session's: archived events of
                   %% what it receives now are left to the hibernated ones.
                   put(push2_pending, true),
                   Host = JID#jid.lserver,
                   Queue = maps:get(mgmt_queue, State, undefined),
                   Pkts = try [P || {_, _, P} <- p1_queue:to_list(Queue)] catch _:_ -> [] end,
                   lists:foreach(
                     fun(Pkt) ->
                             report_for_session(Host, JID, Pkt,
                                                #{only => session_registrations(JID),
                                                  nick => nick_for(State, Pkt)})
                     end, Pkts),
                   extend_hibernation(State, JID)
           end);
c2s_session_pending(State) ->
    State.

%% A message queued for the pending session: one hibernated event, with
%% the archive id and the account's other live sessions (this one not
%% counted), so that it covers what the archived event would have
%% (docs/bridge-protocol.md "One event per stanza").
c2s_handle_send(#{mgmt_state := pending, jid := JID} = State, #message{} = Pkt, _Result) ->
    safely("hibernation-queued", ok,
           fun() ->
                   Mine = session_registrations(JID),
                   Live = live_registrations(jid:remove_resource(JID)) -- Mine,
                   report_for_session(JID#jid.lserver, JID, Pkt, #{live => Live, nick => nick_for(State, Pkt)})
           end),
    State;
c2s_handle_send(State, _Pkt, _Result) ->
    State.

report_for_session(Host, JID, #message{to = To} = Pkt, Extra) ->
    case reportable(Pkt) of
        true ->
            Trigger = case Pkt#message.type of
                          groupchat -> <<"groupchat">>;
                          _ -> <<"hibernated">>
                      end,
            Bare = jid:remove_resource(JID),
            Extra1 = maps:merge(archive_extra(Pkt, Bare), Extra),
            _ = To,
            gen_server:cast(proc(Host), {report, Trigger, account_of(Bare), embed(Pkt), Extra1});
        false -> ok
    end;
report_for_session(_, _, _, _) ->
    ok.

extend_hibernation(#{jid := #jid{luser = U, lserver = S, lresource = R}} = State, _JID) ->
    case lookup(S, {registration, U, R}, undefined) of
        undefined -> State;
        _ when is_map_key(push2_saved_timeout, State) -> State;
        _ ->
            Saved = maps:get(mgmt_timeout, State, undefined),
            Max = lookup(S, max_hibernation, 259200) * 1000,
            ?DEBUG("push2: hibernation of ~ts/~ts extended to ~B s", [U, R, Max div 1000]),
            State1 = mod_stream_mgmt:set_resume_timeout(State, Max),
            State1#{push2_saved_timeout => Saved}
    end.

%% The first push for a pending session's registration: the device has
%% been woken, the normal resume timeout applies again, counted from now.
c2s_handle_cast(#{push2_saved_timeout := Saved} = State, push2_pushed) ->
    State1 = maps:remove(push2_saved_timeout, State),
    State2 = case is_integer(Saved) of
                 true -> safely("hibernation-restore", State1,
                                fun() -> mod_stream_mgmt:set_resume_timeout(State1, Saved) end);
                 false -> State1
             end,
    {stop, State2};
c2s_handle_cast(State, push2_pushed) ->
    {stop, State};
c2s_handle_cast(State, _Msg) ->
    State.

wake(Account, Reg, Host) ->
    safely("wake", ok,
           fun() ->
                   case jid:decode(Account) of
                       #jid{luser = U, lserver = Host} when Reg /= <<>> ->
                           lists:foreach(
                             fun(R) ->
                                     case lists:member(Reg, session_registrations(jid:make(U, Host, R))) of
                                         true ->
                                             case ejabberd_sm:get_session_pid(U, Host, R) of
                                                 Pid when is_pid(Pid) -> ejabberd_c2s:cast(Pid, push2_pushed);
                                                 _ -> ok
                                             end;
                                         false -> ok
                                     end
                             end, ejabberd_sm:get_user_resources(U, Host));
                       _ -> ok
                   end
           end).

%%%===================================================================
%%% SASL2 / Bind2 inline enable (ejabberd >= 24.10)
%%%===================================================================

%% c2s_inline_features is run with (Acc, Host) in 24.12 and with (Acc,
%% Host, State) from 25.10 on: both arities are exported, so one hook
%% registration serves either.
%% Bind2 lists urn:xmpp:push2:0 once push2d has announced its features.
c2s_inline_features({Sasl, Bind, Extra} = Acc, Host) ->
    safely("inline-features", Acc,
           fun() ->
                   case lookup(Host, features, []) of
                       [] -> Acc;
                       _ -> {Sasl, [#bind2_feature{var = ?NS_PUSH2} | Bind], Extra}
                   end
           end);
c2s_inline_features(Acc, _Host) ->
    Acc.

c2s_inline_features(Acc, Host, _State) ->
    c2s_inline_features(Acc, Host).

%% An <enable/> inside the client's Bind2 request: forwarded to push2d
%% under the SASL2 client id, and push2d's answer goes into <bound/>, in
%% the same round trip. The session's process waits for the answer (at
%% most iq_timeout): only this connection, which has nothing else to do
%% before its <success/>, waits.
c2s_handle_bind2_inline({#{user := U, server := S0, resource := R} = State, Els, Results} = Acc) ->
    safely("bind2-enable", Acc,
           fun() ->
                   case [E || #xmlel{name = <<"enable">>, attrs = A} = E <- Els,
                              proplists:get_value(<<"xmlns">>, A) == ?NS_PUSH2] of
                       [Enable | _] ->
                           S = jid:nameprep(S0),
                           Reg = case maps:get(sasl2_ua_id, State, undefined) of
                                     Id when is_binary(Id), Id /= <<>> -> Id;
                                     _ -> R
                                 end,
                           Answer = inline_enable(jid:make(U, S, R), Reg, Enable),
                           {State, Els, Results ++ [Answer]};
                       [] -> Acc
                   end
           end);
c2s_handle_bind2_inline(Acc) ->
    Acc.

inline_enable(#jid{lserver = S} = From, Reg, Enable) ->
    case lookup(S, connected, false) of
        false ->
            inline_error(<<"wait">>, <<"service-unavailable">>, <<"the push service is temporarily unavailable">>);
        true ->
            case refuse_over_limits(S, Enable) of
                ok -> ask_inline(From, Reg, Enable);
                {refused, Text} -> inline_error(<<"modify">>, <<"policy-violation">>, Text)
            end
    end.

ask_inline(#jid{luser = U, lserver = S, lresource = R} = From, Reg, Enable) ->
    Comp = lookup(S, component, <<>>),
    T = lookup(S, iq_timeout, 10) * 1000,
    Ref = make_ref(),
    Req = #iq{type = set, from = jid:make(S), to = jid:make(Comp), id = new_id(),
              sub_els = [#xmlel{name = <<"enable">>,
                                attrs = [{<<"xmlns">>, ?NS_BRIDGE}, {<<"account">>, account_of(From)},
                                         {<<"registration">>, Reg}],
                                children = [Enable]}]},
    ejabberd_router:route_iq(Req, Ref, self(), T),
    receive
        {iq_reply, #iq{type = result, sub_els = Els}, Ref} ->
            applied(<<"enable">>, S, U, R, Els),
            #xmlel{name = <<"enabled">>, attrs = [{<<"xmlns">>, ?NS_PUSH2}]};
        {iq_reply, #iq{type = error} = E, Ref} ->
            case xmpp:get_error(E) of
                #stanza_error{type = Ty, reason = Re, text = Tx} ->
                    inline_error(atom_to_binary(Ty, utf8), reason_name(Re), xmpp:get_text(Tx));
                _ ->
                    inline_error(<<"wait">>, <<"internal-server-error">>, <<>>)
            end;
        {iq_reply, timeout, Ref} ->
            inline_error(<<"wait">>, <<"remote-server-timeout">>, <<>>)
    after T + 1000 ->
            inline_error(<<"wait">>, <<"remote-server-timeout">>, <<>>)
    end.

inline_error(Type, Cond, Text) ->
    Stanzas = <<"urn:ietf:params:xml:ns:xmpp-stanzas">>,
    TextEl = [#xmlel{name = <<"text">>, attrs = [{<<"xmlns">>, Stanzas}], children = [{xmlcdata, Text}]}
              || Text /= <<>>],
    #xmlel{name = <<"failed">>, attrs = [{<<"xmlns">>, ?NS_PUSH2}],
           children = [#xmlel{name = <<"error">>, attrs = [{<<"xmlns">>, ?NS_CLIENT}, {<<"type">>, Type}],
                              children = [#xmlel{name = Cond, attrs = [{<<"xmlns">>, Stanzas}]} | TextEl]}]}.

%%%===================================================================
%%% push2d's parse limits (docs/bridge-protocol.md "Stanzas over the
%%% limits")
%%%===================================================================

%% push2d refuses a stanza over its parse limits unread, so the bridge
%% checks first and never sends (nor buffers) one: an <enable/> over them
%% is answered here, a message is reported by its outline. The limits are
%% the ones push2d announced in <features/> (kept in the host's ets table);
%% until it has, those push2d has always read with.
-define(DEFAULT_LIMITS, #{bytes => 256 * 1024, elements => 4096, depth => 64, attrs => 16384,
                          element_attrs => 256, name_bytes => 256}).
-define(LIMIT_NAMES, [{bytes, <<"max-bytes">>}, {elements, <<"max-elements">>}, {depth, <<"max-depth">>},
                      {attrs, <<"max-attrs">>}, {element_attrs, <<"max-element-attrs">>},
                      {name_bytes, <<"max-name-bytes">>}]).
-define(OUTLINE_MAX_CHILDREN, 32).
-define(OUTLINE_MAX_BODY, 1024).
-define(OUTLINE_MAX_VALUE, 3071).

limits(Host) -> lookup(Host, limits, ?DEFAULT_LIMITS).

%% <limits/> from push2d's <features/>: all of them, or none (a partial or
%% malformed list keeps the previous limits).
set_limits(#state{host = Host}, #xmlel{children = Children}) ->
    case [L || #xmlel{name = <<"limits">>} = L <- Children] of
        [Limits | _] ->
            try maps:from_list([{Key, positive(Key, Attr, fxml:get_tag_attr_s(Attr, Limits))}
                                || {Key, Attr} <- ?LIMIT_NAMES]) of
                New -> ets:insert(table(Host), {limits, New})
            catch throw:{bad_limit, Attr} ->
                    ?WARNING_MSG("push2d announced limits without a valid ~ts; keeping the previous ones",
                                 [Attr])
            end;
        [] -> ok
    end.

positive(_Key, Attr, V) ->
    try binary_to_integer(V) of
        N when N >= 1 -> N;
        _ -> throw({bad_limit, Attr})
    catch error:badarg -> throw({bad_limit, Attr})
    end.

%% What the stanza's envelope adds, counted as push2d counts the whole
%% stanza it reads: the <message/> or <iq/> (depth 1) and the protocol's
%% element (depth 2) with their attributes; bytes with room for JIDs and
%% ids. Extra: the <only/> and <live/> elements of an event.
envelope_usage(Extra) ->
    #{elements => 2 + Extra, attrs => 12 + Extra, bytes => 4096 + 64 * Extra}.

%% Why El (at depth 3, inside the envelope usage U describes) is over the
%% limits L, or ok. Counted as push2d's parser counts: every element, the
%% attributes (namespace declarations included, and one more for a
%% prefixed attribute, whose prefix is declared), names, attribute values
%% and text; it stops at the first limit.
over_limits(El, U, L) ->
    try walk(El, 3, U, L) of
        _ -> ok
    catch throw:{over_limits, Why} -> {over, Why}
    end.

walk(#xmlel{name = Name, attrs = Attrs, children = Children}, Depth, U0, L) ->
    #{elements := MaxEls, depth := MaxDepth, name_bytes := MaxName, element_attrs := MaxElAttrs,
      attrs := MaxAttrs} = L,
    Els = maps:get(elements, U0) + 1,
    Els > MaxEls andalso over("more than ~B elements", MaxEls),
    Depth > MaxDepth andalso over("nested deeper than ~B elements", MaxDepth),
    byte_size(Name) > MaxName andalso over("a name longer than ~B bytes", MaxName),
    {N, AttrBytes} =
        lists:foldl(fun({K, V}, {N0, B0}) ->
                            byte_size(K) > MaxName andalso over("a name longer than ~B bytes", MaxName),
                            Prefixed = case binary:split(K, <<":">>) of
                                           [<<"xmlns">>, _] -> 0;
                                           [_, _] -> 1;
                                           _ -> 0
                                       end,
                            {N0 + 1 + Prefixed, B0 + byte_size(K) + byte_size(V)}
                    end, {0, 0}, Attrs),
    N > MaxElAttrs andalso over("more than ~B attributes on one element", MaxElAttrs),
    Total = maps:get(attrs, U0) + N,
    Total > MaxAttrs andalso over("more than ~B attributes", MaxAttrs),
    U1 = U0#{elements := Els, attrs := Total,
             bytes := check_bytes(maps:get(bytes, U0) + byte_size(Name) + AttrBytes, L)},
    lists:foldl(fun(#xmlel{} = C, U) -> walk(C, Depth + 1, U, L);
                   ({xmlcdata, T}, U) -> U#{bytes := check_bytes(maps:get(bytes, U) + byte_size(T), L)};
                   (_, U) -> U
                end, U1, Children).

check_bytes(B, #{bytes := Max}) when B > Max -> over("larger than ~B bytes", Max);
check_bytes(B, _) -> B.

over(Format, Limit) ->
    throw({over_limits, iolist_to_binary(io_lib:format(Format, [Limit]))}).

%% The error a client's request over push2d's limits gets, or ok.
refuse_over_limits(Host, Payload) ->
    case over_limits(Payload, envelope_usage(0), limits(Host)) of
        ok -> ok;
        {over, Why} -> {refused, <<"the request is over push2d's parse limits (", Why/binary, ")">>}
    end.

%% An event's message as it goes to push2d: the message itself, or, over
%% the limits, its outline, with Extra's truncated set to why.
limit_event(Host, Account, Msg, Extra) ->
    N = length(maps:get(only, Extra, [])) + length(maps:get(live, Extra, [])),
    case over_limits(Msg, envelope_usage(N), limits(Host)) of
        ok -> {Msg, Extra};
        {over, Why} ->
            ?INFO_MSG("push2: a message for ~ts is over push2d's parse limits (~ts): reported by its outline",
                      [Account, Why]),
            {outline(Msg, limits(Host)), Extra#{truncated => Why}}
    end.

%% The outline of a message over push2d's limits, which push2d evaluates
%% instead of the message: its from, to, id and type; its first 32
%% top-level children as empty elements (name and namespace only), except
%% the first <body/>, which keeps its text cut to 1024 bytes. Enough for
%% the match profiles' facts, small whatever the message.
outline(#xmlel{name = Name, attrs = Attrs, children = Children}, #{name_bytes := MaxName}) ->
    Kept = [{K, V} || K <- [<<"from">>, <<"to">>, <<"id">>, <<"type">>],
                      V <- [proplists:get_value(K, Attrs)],
                      is_binary(V), byte_size(V) =< ?OUTLINE_MAX_VALUE],
    #xmlel{name = Name, attrs = [{<<"xmlns">>, ?NS_CLIENT} | Kept],
           children = outline_children([C || #xmlel{} = C <- Children], MaxName, false, 0)}.

outline_children([], _MaxName, _Body, _Kept) -> [];
outline_children(_, _MaxName, _Body, ?OUTLINE_MAX_CHILDREN) -> [];
outline_children([#xmlel{name = Name, attrs = Attrs} = C | Rest], MaxName, Body, Kept) ->
    NS = proplists:get_value(<<"xmlns">>, Attrs),
    IsBody = Name == <<"body">> andalso (NS == undefined orelse NS == ?NS_CLIENT),
    if
        byte_size(Name) > MaxName; is_binary(NS), byte_size(NS) > ?OUTLINE_MAX_VALUE ->
            outline_children(Rest, MaxName, Body, Kept);
        IsBody, Body ->
            outline_children(Rest, MaxName, Body, Kept);
        IsBody ->
            Text = cut_utf8(fxml:get_tag_cdata(C), ?OUTLINE_MAX_BODY),
            [#xmlel{name = <<"body">>, children = [{xmlcdata, Text}]}
             | outline_children(Rest, MaxName, true, Kept + 1)];
        true ->
            [#xmlel{name = Name, attrs = [{<<"xmlns">>, NS} || is_binary(NS)]}
             | outline_children(Rest, MaxName, Body, Kept + 1)]
    end.

%% S cut to at most N bytes, at a UTF-8 character boundary.
cut_utf8(S, N) when byte_size(S) =< N -> S;
cut_utf8(S, N) -> cut_at(S, N).

cut_at(S, 0) -> binary:part(S, 0, 0);
cut_at(S, N) ->
    case binary:at(S, N) of
        B when B < 16#80; B >= 16#C0 -> binary:part(S, 0, N);
        _ -> cut_at(S, N - 1)
    end.
