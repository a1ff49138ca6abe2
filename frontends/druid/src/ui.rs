//! The widgets. They read the model and turn clicks and keys into
//! [`Request`]s for the worker; all state changes go through `model`.

use std::path::PathBuf;
use std::rc::Rc;

use druid::widget::{
    Checkbox, Controller, CrossAxisAlignment, Flex, Label, LineBreaking, List, Painter, Scroll,
    Split, TextBox, ViewSwitcher,
};
use druid::{
    Color, Env, Event, EventCtx, FileDialogOptions, KbKey, LensExt as _, RenderContext as _,
    Selector, UpdateCtx, Widget, WidgetExt as _,
};
use tokio::sync::mpsc::Sender;

mod groups;

pub use groups::ANSWER;

use crate::keys::{AutoFocusExt as _, Focusable, button};
use crate::model::{self, AddContact, AppState, ContactRow, MessageRow, Screen};
use crate::passbox::PassBox;
use crate::settings::Settings;
use crate::worker::Request;

/// A contact row was clicked.
pub const SELECT: Selector<String> = Selector::new("anonchat.select");

const BANNER: Color = Color::rgb8(0xB0, 0x3A, 0x2E);
const MINE: Color = Color::rgb8(0x2E, 0x5E, 0x8C);
const THEIRS: Color = Color::rgb8(0x44, 0x44, 0x4C);

fn request(tx: &Sender<Request>, data: &mut AppState, req: Request) {
    if tx.try_send(req).is_err() {
        "the daemon connection is busy; try again in a moment".clone_into(&mut data.error);
    }
}

fn send_compose(tx: &Sender<Request>, data: &mut AppState) {
    if let Some((to, text)) = model::take_compose(data) {
        request(tx, data, Request::Send { to, text });
    }
}

/// Runs an action when Enter is pressed (Shift+Enter goes to the text
/// box: a new line in the compose box).
struct OnEnter<F>(F);

impl<F: Fn(&mut AppState), W: Widget<AppState>> Controller<AppState, W> for OnEnter<F> {
    fn event(
        &mut self,
        child: &mut W,
        ctx: &mut EventCtx<'_, '_>,
        event: &Event,
        data: &mut AppState,
        env: &Env,
    ) {
        if let Event::KeyDown(k) = event
            && k.key == KbKey::Enter
            && !k.mods.shift()
        {
            (self.0)(data);
            ctx.set_handled();
            return;
        }
        child.event(ctx, event, data, env);
    }
}

fn unlock(tx: &Sender<Request>, d: &mut AppState) {
    let pass = d.passphrase.take();
    d.error.clear();
    request(tx, d, Request::Unlock(pass));
}

fn heading(text: &str) -> Label<AppState> {
    Label::new(text.to_owned()).with_text_size(20.0)
}

fn wrapped(f: impl Fn(&AppState) -> String + 'static) -> Label<AppState> {
    Label::new(move |d: &AppState, _: &Env| f(d)).with_line_break_mode(LineBreaking::WordWrap)
}

pub fn root(tx: Sender<Request>, settings: Option<PathBuf>) -> impl Widget<AppState> {
    let settings = Rc::new(settings);
    let body = ViewSwitcher::new(
        |d: &AppState, _| d.screen,
        move |screen, _, _| match screen {
            Screen::Connecting => Box::new(
                wrapped(|d| format!("Connecting to the anonchat daemon at {}…", d.socket))
                    .padding(20.0),
            ),
            Screen::NoDaemon => Box::new(no_daemon(tx.clone())),
            Screen::FirstRun => Box::new(first_run(tx.clone())),
            Screen::Locked => Box::new(locked(tx.clone())),
            Screen::Main => Box::new(main_view(tx.clone(), Rc::clone(&settings))),
        },
    );
    Flex::column()
        .with_child(
            wrapped(|d| d.banner.clone())
                .with_text_color(Color::WHITE)
                .padding(6.0)
                .expand_width()
                .background(Painter::new(|ctx, d: &AppState, _| {
                    if !d.banner.is_empty() {
                        let rect = ctx.size().to_rect();
                        ctx.fill(rect, &BANNER);
                    }
                })),
        )
        .with_flex_child(body, 1.0)
        .with_child(
            wrapped(|d| d.error.clone())
                .with_text_color(Color::rgb8(0xFF, 0x8A, 0x80))
                .padding((8.0, 2.0)),
        )
        .with_child(
            wrapped(model::status_bar)
                .with_text_size(12.0)
                .padding((8.0, 4.0)),
        )
}

fn no_daemon(tx: Sender<Request>) -> impl Widget<AppState> {
    Flex::column()
        .cross_axis_alignment(CrossAxisAlignment::Start)
        .with_child(heading("No anonchat daemon is running"))
        .with_spacer(8.0)
        .with_child(wrapped(|d| format!("Nothing answers on {}.", d.socket)))
        .with_spacer(12.0)
        .with_child(
            button("Start the daemon", move |_, d: &mut AppState, _| {
                request(&tx, d, Request::StartDaemon);
            })
            .auto_focus(),
        )
        .padding(20.0)
}

fn first_run(tx: Sender<Request>) -> impl Widget<AppState> {
    Flex::column()
        .cross_axis_alignment(CrossAxisAlignment::Start)
        .with_child(heading("Create your identity"))
        .with_spacer(6.0)
        .with_child(wrapped(|_| {
            "Your keys are made and kept by the daemon on this computer. Give the relay line your server's operator gave you.".into()
        }))
        .with_spacer(12.0)
        .with_child(Label::new("Nickname"))
        .with_child(
            TextBox::new()
                .with_placeholder("alice")
                .lens(AppState::form_name)
                .expand_width()
                .auto_focus(),
        )
        .with_spacer(8.0)
        .with_child(Label::new("Relay address"))
        .with_child(
            TextBox::new()
                .with_placeholder("anonchat://relay.example.org:7766/#…")
                .lens(AppState::form_relay)
                .expand_width(),
        )
        .with_spacer(8.0)
        .with_child(Label::new("Passphrase (protects your keys on disk)"))
        .with_child(PassBox::new().lens(AppState::form_passphrase).expand_width())
        .with_spacer(12.0)
        .with_child(button("Generate connection data", move |_, d: &mut AppState, _| {
            let req = Request::Create {
                name: d.form_name.trim().to_owned(),
                relay: d.form_relay.trim().to_owned(),
                passphrase: d.form_passphrase.take(),
            };
            d.error.clear();
            request(&tx, d, req);
        }))
        .padding(20.0)
}

fn locked(tx: Sender<Request>) -> impl Widget<AppState> {
    let tx2 = tx.clone();
    Flex::column()
        .cross_axis_alignment(CrossAxisAlignment::Start)
        .with_child(heading("Your keys are locked"))
        .with_spacer(8.0)
        .with_child(Label::new("Passphrase (Enter unlocks)"))
        .with_child(
            PassBox::new()
                .lens(AppState::passphrase)
                .expand_width()
                .controller(OnEnter(move |d: &mut AppState| unlock(&tx2, d)))
                .auto_focus(),
        )
        .with_spacer(12.0)
        .with_child(button("Unlock", move |_, d: &mut AppState, _| {
            unlock(&tx, d);
        }))
        .padding(20.0)
}

fn contact_row() -> impl Widget<ContactRow> {
    Label::new(|c: &ContactRow, _: &Env| {
        let mark = if c.verified { "✔" } else { "?" };
        let unread = if c.unread > 0 {
            format!("  ({})", c.unread)
        } else {
            String::new()
        };
        let sel = if c.selected { "▸ " } else { "  " };
        format!("{sel}{mark} {}{unread}", c.name)
    })
    .padding((6.0, 4.0))
    .expand_width()
    .on_click(|ctx, c: &mut ContactRow, _| ctx.submit_command(SELECT.with(c.name.clone())))
}

fn message_row() -> impl Widget<MessageRow> {
    Flex::row()
        .with_flex_child(
            Label::new(|m: &MessageRow, _: &Env| {
                let who = match (m.incoming, m.sender.as_str()) {
                    (false, _) => "you: ".to_owned(),
                    (true, "") => String::new(),
                    (true, sender) => format!("{sender}: "),
                };
                let progress = if m.progress.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", m.progress)
                };
                format!("[{}] {who}{} {}{progress}", m.time, m.text, m.mark)
            })
            .with_line_break_mode(LineBreaking::WordWrap)
            .padding(6.0)
            .background(Painter::new(|ctx, m: &MessageRow, _| {
                let rect = ctx.size().to_rounded_rect(6.0);
                ctx.fill(rect, if m.incoming { &THEIRS } else { &MINE });
            })),
            1.0,
        )
        .padding((4.0, 2.0))
}

/// Saves the notification setting when the checkbox changes it.
struct SaveNotifySetting(Rc<Option<PathBuf>>);

impl<W: Widget<AppState>> Controller<AppState, W> for SaveNotifySetting {
    fn update(
        &mut self,
        child: &mut W,
        ctx: &mut UpdateCtx<'_, '_>,
        old: &AppState,
        data: &AppState,
        env: &Env,
    ) {
        if old.notify_text != data.notify_text {
            let on = data.notify_text;
            Settings::update(self.0.as_deref(), |s| s.notify_text = on);
        }
        child.update(ctx, old, data, env);
    }
}

fn sidebar(tx: Sender<Request>, settings: Rc<Option<PathBuf>>) -> impl Widget<AppState> {
    // One list, one Tab stop: the contacts, then the groups.
    let contacts = Focusable::new(
        Scroll::new(
            Flex::column()
                .cross_axis_alignment(CrossAxisAlignment::Start)
                .with_child(List::new(contact_row).lens(AppState::contacts))
                .with_child(groups::group_list()),
        )
        .vertical(),
    )
    .on_arrows(|ctx, d: &mut AppState, delta| {
        if let Some(name) = model::neighbour(d, delta) {
            ctx.submit_command(SELECT.with(name));
        }
    });
    Flex::column()
        .cross_axis_alignment(CrossAxisAlignment::Start)
        .with_child(wrapped(|d| format!("You: {}", d.my_name)).padding(6.0))
        .with_child(button("Export my identity", |ctx, _d: &mut AppState, _| {
            ctx.submit_command(
                druid::commands::SHOW_SAVE_PANEL.with(
                    FileDialogOptions::new()
                        .default_name("your_id")
                        .title("Export your identity file"),
                ),
            );
        }))
        .with_spacer(4.0)
        .with_child(button("Add contact", |_, d: &mut AppState, _| {
            d.new_group = model::GroupForm::default();
            d.add = AddContact {
                open: true,
                ..AddContact::default()
            };
        }))
        .with_spacer(4.0)
        .with_child(button("New group", |_, d: &mut AppState, _| {
            d.add = AddContact::default();
            d.new_group = model::GroupForm {
                open: true,
                ..model::GroupForm::default()
            };
        }))
        .with_spacer(8.0)
        .with_child(groups::invitations())
        .with_flex_child(contacts, 1.0)
        .with_child(button("Refresh", move |_, d: &mut AppState, _| {
            request(&tx, d, Request::Refresh);
        }))
        .with_spacer(4.0)
        .with_child(
            Checkbox::new("Message text in notifications")
                .lens(AppState::notify_text)
                .controller(SaveNotifySetting(settings)),
        )
        .padding(6.0)
}

fn add_contact_panel(tx: Sender<Request>) -> impl Widget<AppState> {
    let tx2 = tx.clone();
    Flex::column()
        .cross_axis_alignment(CrossAxisAlignment::Start)
        .with_child(heading("Add a contact"))
        .with_spacer(8.0)
        .with_child(button(
            "Choose your friend's identity file…",
            |ctx, _d: &mut AppState, _| {
                ctx.submit_command(druid::commands::SHOW_OPEN_PANEL.with(FileDialogOptions::new()));
            },
        ))
        .with_child(wrapped(|d| {
            if d.add.file_name.is_empty() {
                "No file chosen.".into()
            } else {
                format!("File: {}", d.add.file_name)
            }
        }))
        .with_spacer(8.0)
        .with_child(Label::new("…or paste the identity text they sent you"))
        .with_child(
            TextBox::multiline()
                .with_placeholder("-----BEGIN ANONCHAT IDENTITY-----")
                .lens(AppState::add.then(AddContact::pasted))
                .expand_width()
                .fix_height(90.0)
                .auto_focus(),
        )
        .with_spacer(8.0)
        .with_child(Label::new("Name for this contact"))
        .with_child(
            TextBox::new()
                .lens(AppState::add.then(AddContact::name))
                .expand_width(),
        )
        .with_spacer(8.0)
        .with_child(button("Add", move |_, d: &mut AppState, _| {
            let Some(text) = model::identity_text(&d.add) else {
                "Choose your friend's identity file or paste its text first."
                    .clone_into(&mut d.error);
                return;
            };
            let req = Request::AddContact {
                text,
                name: d.add.name.trim().to_owned(),
            };
            d.error.clear();
            request(&tx, d, req);
        }))
        .with_spacer(12.0)
        .with_child(wrapped(|d| {
            if d.add.added_fingerprint.is_empty() {
                String::new()
            } else {
                format!(
                    "Added {}. Read these twelve groups to each other, aloud or in person:\n\n{}",
                    d.add.added_name, d.add.added_fingerprint
                )
            }
        }))
        .with_spacer(8.0)
        .with_child(
            Flex::row()
                .with_child(button(
                    "They match: mark verified",
                    move |_, d: &mut AppState, _| {
                        if !d.add.added_fingerprint.is_empty() {
                            let req = Request::Verify {
                                name: d.add.added_name.clone(),
                                fingerprint: d.add.added_fingerprint.clone(),
                            };
                            request(&tx2, d, req);
                            d.add = AddContact::default();
                        }
                    },
                ))
                .with_spacer(8.0)
                .with_child(button("Close (Esc)", |_, d: &mut AppState, _| {
                    d.add = AddContact::default();
                })),
        )
        .padding(12.0)
}

fn conversation(tx: Sender<Request>) -> impl Widget<AppState> {
    let tx2 = tx.clone();
    let tx3 = tx.clone();
    Flex::column()
        .with_child(
            wrapped(|d| match &d.selected {
                None => "Choose a contact on the left.".into(),
                Some(name) if model::group_of(name).is_some() => match model::selected_group(d) {
                    Some(g) => format!(
                        "{name}{}   ·   {} member{}: {}",
                        if g.owner { " (yours)" } else { "" },
                        g.members,
                        if g.members == 1 { "" } else { "s" },
                        g.members_line
                    ),
                    None => name.clone(),
                },
                Some(name) => {
                    let verified = d
                        .contacts
                        .iter()
                        .find(|c| &c.name == name)
                        .is_some_and(|c| c.verified);
                    format!(
                        "{name}{}",
                        if verified {
                            "  ✔ verified"
                        } else {
                            "  (not verified)"
                        }
                    )
                }
            })
            .with_text_size(16.0)
            .padding(6.0)
            .expand_width(),
        )
        .with_flex_child(
            Scroll::new(List::new(message_row).lens(AppState::conversation))
                .vertical()
                .expand(),
            1.0,
        )
        .with_child(
            Flex::row()
                .with_flex_child(
                    TextBox::multiline()
                        .with_placeholder("Message (Enter sends, Shift+Enter: new line)")
                        .lens(AppState::compose)
                        .expand_width()
                        .controller(OnEnter(move |d: &mut AppState| send_compose(&tx, d)))
                        .auto_focus(),
                    1.0,
                )
                .with_spacer(6.0)
                .with_child(button("Send", move |_, d: &mut AppState, _| {
                    send_compose(&tx2, d);
                }))
                .padding(6.0),
        )
        .with_child(groups::group_bar(tx3))
}

fn main_view(tx: Sender<Request>, settings: Rc<Option<PathBuf>>) -> impl Widget<AppState> {
    let right = ViewSwitcher::new(|d: &AppState, _| (d.add.open, d.new_group.open), {
        let tx = tx.clone();
        move |open, _, _| match open {
            (true, _) => Box::new(add_contact_panel(tx.clone())),
            (false, true) => Box::new(groups::group_form(tx.clone())),
            (false, false) => Box::new(conversation(tx.clone())),
        }
    });
    Split::columns(sidebar(tx, settings), right)
        .split_point(0.3)
        .draggable(true)
        .solid_bar(true)
}
