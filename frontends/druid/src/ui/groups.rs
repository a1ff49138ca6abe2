//! The group widgets: rows of the sidebar list, the invitations with
//! Accept and Decline, the new-group panel, and the bar under a group
//! conversation (invite, leave).

use druid::widget::{
    CrossAxisAlignment, Either, Flex, Label, LineBreaking, List, SizedBox, TextBox, ViewSwitcher,
};
use druid::{Env, LensExt as _, Selector, Widget, WidgetExt as _};
use tokio::sync::mpsc::Sender;

use super::{SELECT, heading, request, wrapped};
use crate::keys::{AutoFocusExt as _, button};
use crate::model::{self, AppState, GroupForm, GroupRow, InvitationRow};
use crate::worker::Request;

/// An invitation was answered: its group id, and whether accepted.
pub const ANSWER: Selector<(String, bool)> = Selector::new("anonchat.answer");

pub fn group_row() -> impl Widget<GroupRow> {
    Label::new(|g: &GroupRow, _: &Env| {
        let unread = if g.unread > 0 {
            format!("  ({})", g.unread)
        } else {
            String::new()
        };
        let sel = if g.selected { "▸ " } else { "  " };
        format!("{sel}#{}{unread}", g.name)
    })
    .padding((6.0, 4.0))
    .expand_width()
    .on_click(|ctx, g: &mut GroupRow, _| ctx.submit_command(SELECT.with(g.key())))
}

fn invitation_row() -> impl Widget<InvitationRow> {
    Flex::column()
        .cross_axis_alignment(CrossAxisAlignment::Start)
        .with_child(
            Label::new(|i: &InvitationRow, _: &Env| {
                if i.members > 0 {
                    let s = if i.members == 1 { "" } else { "s" };
                    format!("#{} from {} ({} member{s})", i.group, i.from, i.members)
                } else {
                    format!("#{} from {}", i.group, i.from)
                }
            })
            .with_line_break_mode(LineBreaking::WordWrap),
        )
        .with_child(
            Flex::row()
                .with_child(button("Accept", |ctx, i: &mut InvitationRow, _| {
                    ctx.submit_command(ANSWER.with((i.id.clone(), true)));
                }))
                .with_spacer(4.0)
                .with_child(button("Decline", |ctx, i: &mut InvitationRow, _| {
                    ctx.submit_command(ANSWER.with((i.id.clone(), false)));
                })),
        )
        .padding((0.0, 2.0, 0.0, 6.0))
}

/// The pending invitations (nothing when there are none).
pub fn invitations() -> impl Widget<AppState> {
    Either::new(
        |d: &AppState, _| d.invitations.is_empty(),
        SizedBox::empty(),
        Flex::column()
            .cross_axis_alignment(CrossAxisAlignment::Start)
            .with_child(Label::new("Invitations to groups:"))
            .with_child(List::new(invitation_row).lens(AppState::invitations)),
    )
}

/// The list under the contacts: a heading when there are groups.
pub fn group_list() -> impl Widget<AppState> {
    Either::new(
        |d: &AppState, _| d.groups.is_empty(),
        SizedBox::empty(),
        Flex::column()
            .cross_axis_alignment(CrossAxisAlignment::Start)
            .with_child(
                Label::new("Groups")
                    .with_text_size(12.0)
                    .padding((6.0, 6.0, 6.0, 0.0)),
            )
            .with_child(List::new(group_row).lens(AppState::groups)),
    )
}

fn create(tx: &Sender<Request>, d: &mut AppState) {
    let Some((name, with)) = model::new_group(&d.new_group) else {
        "Give the group a name first.".clone_into(&mut d.error);
        return;
    };
    d.error.clear();
    request(tx, d, Request::CreateGroup { name, with });
}

pub fn group_form(tx: Sender<Request>) -> impl Widget<AppState> {
    Flex::column()
        .cross_axis_alignment(CrossAxisAlignment::Start)
        .with_child(heading("New group"))
        .with_spacer(6.0)
        .with_child(wrapped(|_| {
            "You own the group: you invite and remove members. Each contact you invite joins when they accept.".into()
        }))
        .with_spacer(8.0)
        .with_child(Label::new("Group name"))
        .with_child(
            TextBox::new()
                .with_placeholder("friends")
                .lens(AppState::new_group.then(GroupForm::name))
                .expand_width()
                .auto_focus(),
        )
        .with_spacer(8.0)
        .with_child(Label::new("Contacts to invite (separated by commas)"))
        .with_child(
            TextBox::new()
                .with_placeholder("bob, carol")
                .lens(AppState::new_group.then(GroupForm::with))
                .expand_width(),
        )
        .with_child(wrapped(|d| {
            let names: Vec<&str> = d.contacts.iter().map(|c| c.name.as_str()).collect();
            format!("Your contacts: {}", names.join(", "))
        }))
        .with_spacer(8.0)
        .with_child(
            Flex::row()
                .with_child(button("Create", move |_, d: &mut AppState, _| {
                    create(&tx, d);
                }))
                .with_spacer(8.0)
                .with_child(button("Close (Esc)", |_, d: &mut AppState, _| {
                    d.new_group = GroupForm::default();
                })),
        )
        .padding(12.0)
}

/// What the bar under a selected group shows: inviting (ours only), and
/// leaving (asked twice).
#[derive(Clone, Copy, PartialEq, Eq, druid::Data)]
struct BarKey {
    owner: bool,
    leave_armed: bool,
}

fn invite(tx: &Sender<Request>, d: &mut AppState) {
    let (Some(group), contact) = (d.selected.clone(), d.invite.trim().to_owned()) else {
        return;
    };
    if contact.is_empty() {
        "Type the name of the contact to invite.".clone_into(&mut d.error);
        return;
    }
    d.error.clear();
    d.invite.clear();
    request(tx, d, Request::Invite { group, contact });
}

fn bar(tx: &Sender<Request>, key: BarKey) -> Flex<AppState> {
    let mut row = Flex::row();
    if key.owner {
        let tx = tx.clone();
        row = row
            .with_flex_child(
                TextBox::new()
                    .with_placeholder("contact to invite")
                    .lens(AppState::invite)
                    .expand_width(),
                1.0,
            )
            .with_spacer(4.0)
            .with_child(button("Invite", move |_, d: &mut AppState, _| {
                invite(&tx, d);
            }))
            .with_spacer(12.0);
    } else {
        row = row.with_flex_spacer(1.0);
    }
    if key.leave_armed {
        let tx = tx.clone();
        row.with_child(Label::new("Leave, and delete its history here?"))
            .with_spacer(4.0)
            .with_child(button("Yes, leave", move |_, d: &mut AppState, _| {
                if let Some(g) = d.selected.clone() {
                    d.leave_armed = false;
                    request(&tx, d, Request::Leave(g));
                }
            }))
            .with_spacer(4.0)
            .with_child(button("Cancel", |_, d: &mut AppState, _| {
                d.leave_armed = false;
            }))
    } else {
        row.with_child(button("Leave group", |_, d: &mut AppState, _| {
            d.leave_armed = true;
        }))
    }
}

/// Under a group conversation (after the compose box, so that Tab from
/// the contact list still reaches the compose box first).
pub fn group_bar(tx: Sender<Request>) -> impl Widget<AppState> {
    ViewSwitcher::new(
        |d: &AppState, _| {
            model::selected_group(d).map(|g| BarKey {
                owner: g.owner,
                leave_armed: d.leave_armed,
            })
        },
        move |key, _, _| match key {
            None => Box::new(Flex::row()),
            Some(key) => Box::new(bar(&tx, *key).padding((6.0, 0.0, 6.0, 6.0))),
        },
    )
}
